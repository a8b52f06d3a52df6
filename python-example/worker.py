#!/usr/bin/python3
"""A dagwork worker in plain Python: steal tasks in batches, run each payload as a shell command
(heartbeating while it runs), complete with stdout or fail with stderr, exit when the hub says
all work is finished.

    /usr/bin/python3 python-example/worker.py [--hub tcp://127.0.0.1:6125] [--batch 4]
"""
import argparse
import os
import subprocess

from dagwork import Hub, pb


def run(hub, task, held):
    """Runs one task's command; heartbeats every lease in `held` while it runs."""
    env = dict(os.environ, TASK_NAME=task.name, TASK_ATTEMPT=str(task.attempt), DAGWORK_WORKER=hub.worker)
    proc = subprocess.Popen(["/bin/sh", "-c", task.payload.decode()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
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
    parser.add_argument("--hub", help="hub endpoint (default $DAGWORK_HUB or tcp://127.0.0.1:6125)")
    parser.add_argument("--worker", help="worker id (default $DAGWORK_WORKER or HOST-PID)")
    parser.add_argument("--batch", type=int, default=4, help="tasks to steal at once")
    parser.add_argument("--wait-ms", type=int, default=2000, help="long poll when nothing is ready")
    args = parser.parse_args()

    hub = Hub(args.hub, args.worker)
    done = failed = 0
    reply = hub.steal(args.batch, args.wait_ms)
    while True:
        held = {task.name for task in reply.tasks}
        completions = []
        for task in reply.tasks:
            code, out, err = run(hub, task, held)
            if code == 0:
                completions.append(pb.Completion(name=task.name, result=out))
                done += 1
            elif code is not None:
                hub.fail(task.name, f"exit {code}: {err.decode(errors='replace')[-2000:]}")
                held.discard(task.name)
                failed += 1
        if not reply.tasks and reply.finished:
            break
        # Report this batch and take the next one in a single round trip.
        reply = hub.complete(completions, next_n=args.batch, wait_ms=args.wait_ms).next
    print(f"worker {hub.worker}: {done} done, {failed} failed", flush=True)
    hub.close()


if __name__ == "__main__":
    main()
