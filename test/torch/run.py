#!/usr/bin/python3
"""Runs the pixelfly_torch test modules (test/torch/test_*.py, unittest) in one interpreter and prints
one JSON line per test — {"name", "status": "pass" | "fail" | "skip", "message", "ms"} — for
torch.test.ts, which turns each into a node:test subtest (a skip keeps its reason, a failure its
traceback).

    PYTHONPATH=dist/python /usr/bin/python3 test/torch/run.py [test_ops ...]
"""
import json
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent


class JsonLines(unittest.TestResult):
    def startTest(self, test):
        super().startTest(test)
        self._t0 = time.perf_counter()

    def _emit(self, test, status, message=""):
        ms = (time.perf_counter() - self._t0) * 1000
        print(json.dumps({"name": test.id().replace("__main__.", ""), "status": status, "message": message, "ms": round(ms, 1)}),
              flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._emit(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._emit(test, "fail", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._emit(test, "fail", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._emit(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._emit(test, "fail", "expected failures are not used here: " + self._exc_info_to_string(err, test))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._emit(test, "fail", "unexpected success")


def main(names):
    sys.path.insert(0, str(HERE))
    loader = unittest.TestLoader()
    modules = names or sorted(p.stem for p in HERE.glob("test_*.py"))
    suite = unittest.TestSuite(loader.loadTestsFromName(m) for m in modules)
    result = JsonLines()
    suite.run(result)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
