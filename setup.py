"""Puts the built loader into the wheel (docs/packaging.md, "The wheel").

`pip wheel .` runs build_py, which here also runs cargo and lays out the package data
`hvboot/_bundle/` (hvboot.loader.bundle: the UEFI loader already converted to PE, the BIOS
loader, hvboot-check, the sample hypervisor, the kernel-API crates' sources). An editable
install (`pip install -e .`, scripts/setup.sh) skips that: a checkout finds target/ itself.
The wheel holds x86_64 Linux programs, so it is tagged py3-none-linux_x86_64, not pure.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithLoader(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        sys.path.insert(0, str(ROOT / "src"))
        from hvboot.loader import bundle

        info = bundle.write(ROOT, Path(self.build_lib) / "hvboot" / bundle.DIR_NAME)
        print(f"bundled the loader: {info.line()}")


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True  # the programs in _bundle/: platform-specific, installed as platlib


class PlatformWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", "linux_x86_64"


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithLoader, "bdist_wheel": PlatformWheel},
)
