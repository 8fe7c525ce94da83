"""Build of kmcodec's compiled kernels (kmcodec._kernels); everything else is in pyproject.toml.

The kernels are C11 under a thin CPython binding, compiled by the system's C
compiler.  Floating point (the encoder's k-means search) is compiled without
fast-math and with FMA contraction off, so every platform writes the same bytes.

Environment variables of the build (``pip install .`` passes them through):

- ``KMC_WERROR=1``: warnings are errors (CI builds this way).
- ``KMC_SANITIZE=1``: AddressSanitizer + UndefinedBehaviorSanitizer, every
  finding fatal; run Python with ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``
  (docs/sanitizers.md).
- ``KMC_OPT=0``: no optimisation (``-O0``), to check that it writes the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = Path("kmcodec") / "csrc"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


class BuildKernels(build_ext):
    """build_ext with the flags the kernels' determinism and safety need, per compiler."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            # /fp:precise is MSVC's default and does not contract a * b + c into an FMA.
            compile_args = ["/O2", "/fp:precise", "/W4"] + (["/WX"] if _flag("KMC_WERROR") else [])
            link_args: list[str] = []
        else:
            opt = "-O0" if os.environ.get("KMC_OPT") == "0" else "-O2"
            compile_args = ["-std=c11", opt, "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra"]
            compile_args += ["-fvisibility=hidden"]
            link_args = []
            if _flag("KMC_WERROR"):
                compile_args.append("-Werror")
            if _flag("KMC_SANITIZE"):
                sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
                compile_args += [*sanitize, "-g", "-O1"]
                link_args += sanitize
        for ext in self.extensions:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "kmcodec._kernels",
            sources=sorted(str(p) for p in CSRC.glob("*.c")),
            depends=sorted(str(p) for p in CSRC.glob("*.h")),
        )
    ],
    cmdclass={"build_ext": BuildKernels},
)
