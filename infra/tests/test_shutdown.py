"""A local stack leaves nothing behind: infra/with-moto.sh stops the emulator when the command
it runs ends, when it is interrupted (Ctrl-C) or told to stop, and the emulator stops on its
own when whoever started it is killed outright.

Run with: .venv/bin/python -m unittest discover -s infra/tests -v
"""

import os
import signal
import socket
import subprocess
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WITH_MOTO = os.path.join(HERE, "with-moto.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).read()
        return True
    except OSError:
        return False


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


class ShutdownTest(unittest.TestCase):
    def start(self, command: list[str]) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = subprocess.Popen(
            [WITH_MOTO, *command],
            env=dict(os.environ, MOTO_PORT=str(port), MOTO_LOG=os.devnull),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        self.assertTrue(wait_for(lambda: answers(port), 60), "the emulator never answered")
        return proc, port

    def test_the_emulator_stops_when_the_command_ends(self):
        proc, port = self.start(["sleep", "2"])
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertTrue(wait_for(lambda: not answers(port), 10), "the emulator outlived its command")

    def test_ctrl_c_stops_the_command_and_the_emulator(self):
        proc, port = self.start(["sleep", "300"])
        os.killpg(proc.pid, signal.SIGINT)
        self.assertNotEqual(proc.wait(timeout=30), 0)
        self.assertTrue(wait_for(lambda: not answers(port), 10), "the emulator outlived Ctrl-C")

    def test_terminate_stops_the_emulator(self):
        proc, port = self.start(["sleep", "300"])
        proc.terminate()
        self.assertNotEqual(proc.wait(timeout=30), 0)
        self.assertTrue(wait_for(lambda: not answers(port), 10), "the emulator outlived SIGTERM")

    def test_the_emulator_stops_when_its_starter_is_killed_outright(self):
        proc, port = self.start(["sleep", "300"])
        proc.kill()  # SIGKILL to the script alone: it cannot clean up
        proc.wait(timeout=10)
        self.assertTrue(
            wait_for(lambda: not answers(port), 15), "the emulator was orphaned and kept running"
        )


if __name__ == "__main__":
    unittest.main()
