#!/usr/bin/env python3
"""Runs a command on a new pseudo-terminal (its controlling tty) and answers its prompts.

    ptyrun.py [--timeout SECONDS] [--answer REGEX TEXT]... -- COMMAND [ARGS...]

Tools that read secrets from /dev/tty (libfido2's `fido2-token -S`, readpassphrase(3)) flush
typed-ahead input before reading, so an answer is only written once the prompt has appeared:
each --answer pair is used in order, TEXT (plus a newline) being sent when REGEX matches the
output seen since the previous answer. Everything the command prints is copied to stdout.
Exit status: the command's; 124 on timeout; 125 if a prompt never came.
"""

import os
import pty
import re
import select
import signal
import sys
import time


def main(argv):
    timeout = 60.0
    answers = []
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--timeout":
            timeout = float(argv[i + 1])
            i += 2
        elif argv[i] == "--answer":
            answers.append((re.compile(argv[i + 1]), argv[i + 2]))
            i += 3
        else:
            sys.exit(f"ptyrun: unknown option {argv[i]!r}")
    command = argv[i + 1 :]
    if not command:
        sys.exit("ptyrun: no command")

    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)

    deadline = time.monotonic() + timeout
    pending = ""  # output since the last answer
    status = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"\nptyrun: timed out after {timeout:.0f}s", flush=True)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 124
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                break
            text = data.decode(errors="replace")
            sys.stdout.write(text)
            sys.stdout.flush()
            pending += text
            if answers and answers[0][0].search(pending):
                # Let the command reach its read(): readpassphrase flushes input after the
                # prompt is written.
                time.sleep(0.3)
                os.write(fd, (answers.pop(0)[1] + "\n").encode())
                pending = ""
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            # Drain what is left.
            while select.select([fd], [], [], 0.1)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                sys.stdout.write(data.decode(errors="replace"))
            break
    if status is None:
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    if answers and code == 0:
        print(f"\nptyrun: the prompt {answers[0][0].pattern!r} never came", flush=True)
        return 125
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
