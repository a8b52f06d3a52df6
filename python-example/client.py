#!/usr/bin/python3
"""Submit a small DAG of shell commands to dhub, wait for it to finish, print status and results.

    /usr/bin/python3 python-example/client.py [--hub tcp://127.0.0.1:6125]
"""
import argparse
import sys
import time

from dagwork import Hub, pb

# name -> (deps, shell command): a diamond, then a summary.
DAG = {
    "fetch": ([], "echo 'raw data'"),
    "left": (["fetch"], "echo left; sleep 0.1"),
    "right": (["fetch"], "echo right; sleep 0.1"),
    "merge": (["left", "right"], "echo merged"),
    "report": (["merge"], "echo \"report by $DAGWORK_WORKER\""),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", help="hub endpoint, or several separated by commas: a hub and its standbys (default $DAGWORK_HUB or tcp://127.0.0.1:6125)")
    parser.add_argument("--timeout", type=float, default=60, help="give up waiting after this many seconds")
    args = parser.parse_args()

    try:
        hub = Hub(args.hub, worker="python-client")
    except ValueError as err:
        parser.error(f"--hub: {err}")
    tasks = [pb.TaskSpec(name=name, deps=deps, payload=cmd.encode()) for name, (deps, cmd) in DAG.items()]
    created = hub.create(tasks)
    print(f"created {created.created} tasks ({created.unchanged} already there)")

    deadline = time.monotonic() + args.timeout
    while True:
        counts = hub.status().counts
        if counts.waiting + counts.ready + counts.running + counts.verifying == 0:
            break
        if time.monotonic() > deadline:
            sys.exit(f"gave up after {args.timeout} s: {counts}")
        time.sleep(0.2)

    counts = hub.status().counts
    print(f"done {counts.done}, failed {counts.failed}, blocked {counts.blocked}")
    for name in DAG:
        task = hub.lookup(name)
        state = pb.TaskState.Name(task.state)
        print(f"{name:8} {state:8} {task.worker:20} {task.result.decode().strip()}")
    hub.close()
    sys.exit(0 if counts.done == len(DAG) else 1)


if __name__ == "__main__":
    main()
