#!/usr/bin/python3
"""A dagwork worker in plain Python: steal tasks in batches, run each payload as a shell command
in a scratch directory (heartbeating while it runs), complete with stdout or fail with stderr,
exit when the hub says all work is finished.

Files: a task's inputs are fetched into its scratch directory first, its param files written and
its params exported as PARAM_<name>; after a successful run its declared outputs are uploaded and
named in the completion (a missing one fails the attempt).

    /usr/bin/python3 python-example/worker.py [--hub tcp://127.0.0.1:6125] [--batch 4]
"""
import argparse
import os
import shutil
import subprocess
import tempfile

from dagwork import Hub, pb


def prepare(hub, task, scratch):
    """Puts the task's inputs and param files into its scratch directory."""
    for ref in task.inputs:
        dest = os.path.join(scratch, ref.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        hub.get_file(ref.sha256, dest, ref.executable)
    values = {p.name: p.value for p in task.params}
    for pf in task.param_files:
        dest = os.path.join(scratch, pf.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as f:
            f.write(values[pf.param])


def run(hub, task, held, scratch):
    """Runs one task's command in `scratch`; heartbeats every lease in `held` while it runs."""
    env = dict(os.environ, TASK_NAME=task.name, TASK_ATTEMPT=str(task.attempt), DAGWORK_WORKER=hub.worker)
    env.update({f"PARAM_{p.name}": p.value for p in task.params})
    proc = subprocess.Popen(["/bin/sh", "-c", task.payload.decode()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=scratch)
    beat = max(task.lease_ms / 3000, 0.05)
    while True:
        try:
            out, err = proc.communicate(timeout=beat)
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            for lost in hub.heartbeat(list(held)):
                print(f"lost the lease of {lost.name}: {pb.TaskOutcome.Name(lost.outcome)}", flush=True)
                held.discard(lost.name)
            if task.name not in held:
                proc.kill()
                proc.communicate()
                return None, b"", b"lease lost"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", help="hub endpoint, or several separated by commas: a hub and its standbys (default $DAGWORK_HUB or tcp://127.0.0.1:6125)")
    parser.add_argument("--worker", help="worker id (default $DAGWORK_WORKER or HOST-PID)")
    parser.add_argument("--batch", type=int, default=4, help="tasks to steal at once")
    parser.add_argument("--wait-ms", type=int, default=2000, help="long poll when nothing is ready")
    args = parser.parse_args()

    try:
        hub = Hub(args.hub, args.worker)
    except ValueError as err:
        parser.error(f"--hub: {err}")
    done = failed = 0
    reply = hub.steal(args.batch, args.wait_ms)
    while True:
        held = {task.name for task in reply.tasks}
        completions = []
        for task in reply.tasks:
            scratch = tempfile.mkdtemp(prefix="dagwork-py-")
            try:
                prepare(hub, task, scratch)
                code, out, err = run(hub, task, held, scratch)
                missing = [name for name in task.outputs if not os.path.isfile(os.path.join(scratch, name))]
                if code == 0 and missing:
                    code, err = 1, f"declared output {missing[0]!r} was not written".encode()
                if code == 0:
                    outputs = [hub.put_file(os.path.join(scratch, name), name) for name in task.outputs]
                    completions.append(pb.Completion(name=task.name, result=out, outputs=outputs))
                    done += 1
                elif code is not None:
                    hub.fail(task.name, f"exit {code}: {err.decode(errors='replace')[-2000:]}")
                    held.discard(task.name)
                    failed += 1
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        if not reply.tasks and reply.finished:
            break
        # Report this batch and take the next one in a single round trip.
        reply = hub.complete(completions, next_n=args.batch, wait_ms=args.wait_ms).next
    print(f"worker {hub.worker}: {done} done, {failed} failed", flush=True)
    hub.close()


if __name__ == "__main__":
    main()
