"""Host-memory tuning: after it, a step that allocates and frees large tensors stops faulting its
memory in again (measured in a fresh process, since the setting is per process)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

WORKLOAD = """
import json, resource, sys
import torch
if sys.argv[1] == "1":
    from c4c.train.host_memory import keep_freed_memory
    tuned = keep_freed_memory()
else:
    tuned = False

def step():
    big = [torch.empty(5_000_000).fill_(1.0) for _ in range(8)]    # 8 activations of 20 MB
    small = [torch.empty(300_000).fill_(1.0) for _ in range(20)]
    del big, small

step(); step()                                                      # the heap grows here
per_step = []
for _ in range(5):                                                  # the median step: another thread or the
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt    # kernel may fault pages in during one
    step()
    per_step.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
faults = sorted(per_step)[2]
print(json.dumps({"tuned": tuned, "faults_per_step": faults, "pages_per_step": (8 * 20e6 + 20 * 1.2e6) / 4096}))
"""

glibc_linux = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                 reason="the tuning applies to glibc on Linux only")


def _run(tune: str, env_extra: dict | None = None) -> dict:
    import os

    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", WORKLOAD, tune], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_linux
def test_tuned_process_reuses_freed_memory_instead_of_faulting_it_in():
    tuned = _run("1")
    assert tuned["tuned"] is True
    assert tuned["faults_per_step"] < 0.01 * tuned["pages_per_step"]


@glibc_linux
def test_environment_variable_turns_the_tuning_off():
    off = _run("1", {"C4C_KEEP_FREED_MEMORY": "0"})
    assert off["tuned"] is False
