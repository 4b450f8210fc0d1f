"""The wheel (docs/packaging.md): `pip wheel .` carries the built loader; installed into a fresh
virtual environment in a temporary folder, with no path of this checkout anywhere, the installed
`hvboot` boots a kernel under both firmwares, debugs the loader, runs the demo, and writes a
kernel crate whose `cargo run` boots it and whose vendored hvboot crates pass `cargo package`."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from report_kernel import parse_report

from hvboot import __version__
from hvboot.loader import artifacts, bundle
from hvboot.protocol.layout import PROTOCOL

pytestmark = pytest.mark.boot

REPO = artifacts.REPO
# The wheel build runs cargo (warm) in a pip-isolated build environment: ~35 s here.
WHEEL_BUILD_LIMIT = 300.0
TIMEOUT = 600
PIP = (sys.executable, "-m", "pip")


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path  # the folder every command runs in (outside the checkout)
    env: dict[str, str]  # no checkout venv, PYTHONPATH or HVBOOT_* override

    @property
    def bundle(self) -> Path:
        site = self.run_python("import hvboot.loader.artifacts as a; print(a.BUNDLE)")
        return Path(site.stdout.strip())

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=cwd or self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def hvboot(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "hvboot"), *args, cwd=cwd)

    def run_python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "python"), "-c", code)


def _clean_env(venv: Path) -> dict[str, str]:
    """This environment without the checkout: its .venv off PATH, no PYTHONPATH or overrides."""
    here = Path(sys.executable).parent
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p) != here]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HVBOOT_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    return env


def _build_wheel(out: Path) -> Path:
    start = time.monotonic()
    r = subprocess.run(
        [*PIP, "wheel", str(REPO), "--no-deps", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert seconds < WHEEL_BUILD_LIMIT, f"the wheel took {seconds:.0f} s to build"
    (out / "seconds").write_text(f"{seconds:.1f}\n")
    (wheel,) = out.glob("hvboot-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built and installed once per session, shared by pytest-xdist's workers."""
    base = tmp_path_factory.getbasetemp()
    # Under pytest-xdist each worker has its own basetemp below the session's.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "hvboot-wheel"
    shared.mkdir(exist_ok=True)
    venv, work = shared / "venv", shared / "work"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "ready").is_file():
            for old in (venv, work, shared / "dist"):
                shutil.rmtree(old, ignore_errors=True)
            wheel = _build_wheel(shared / "dist")
            # No pip inside (ensurepip alone takes half a minute here): this pip installs into it.
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            r = subprocess.run(
                [*PIP, "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
            assert r.returncode == 0, r.stderr[-3000:]
            work.mkdir()
            (shared / "ready").touch()
    print(f"wheel built in {(shared / 'dist' / 'seconds').read_text().strip()} s")
    return Installed(venv, work, _clean_env(venv))


@pytest.fixture
def kernel(report_kernel: Path, tmp_path: Path) -> Path:
    """The report kernel, copied out of the checkout."""
    return Path(shutil.copy(report_kernel, tmp_path))


def test_no_checkout_on_any_path(installed: Installed) -> None:
    r = installed.run_python(
        "import hvboot, os, sys, json; "
        "print(json.dumps([hvboot.__file__, os.getcwd(), sys.path, os.environ['PATH']]))"
    )
    assert r.returncode == 0, r.stderr
    module, cwd, sys_path, path = json.loads(r.stdout)
    assert Path(module).is_relative_to(installed.venv)
    for where in (cwd, *sys_path, *path.split(os.pathsep)):
        assert not (Path(cwd) / where).resolve().is_relative_to(REPO), where
    # The installed package finds its loader in the package, not by a path into a checkout.
    assert installed.bundle.is_relative_to(installed.venv)


def test_version_names_package_loader_build_and_protocol(installed: Installed) -> None:
    r = installed.hvboot("--version")
    assert r.returncode == 0, r.stderr
    pe = artifacts.uefi_loader_pe()
    bios = artifacts.bios_loader_elf().read_bytes()
    expected = bundle.build_info(REPO, pe, bios)
    assert r.stdout.strip() == expected.line(), r.stdout
    assert f"hvboot {__version__}," in r.stdout and f"protocol {PROTOCOL.version}" in r.stdout
    assert "checkout" not in r.stdout


@pytest.mark.parametrize("verb", ["gen-docs", "gen-protocol"])
def test_checkout_commands_say_so(installed: Installed, verb: str) -> None:
    r = installed.hvboot(verb, "--check")
    assert r.returncode == 2
    assert f"hvboot {verb}: changes the files of a source checkout of hvboot" in r.stderr


def test_doctor_asks_an_installed_package_only_for_what_it_runs(installed: Installed) -> None:
    r = installed.hvboot("doctor")
    assert r.returncode in (0, 1), r.stderr
    names = {line.split()[1] for line in r.stdout.splitlines() if line[:1] in "oM"}
    # The loader comes built in the wheel: no assembler, no test-suite image checkers.
    assert {"qemu-system-x86_64", "cargo", "UEFI", "checker"} <= names, r.stdout
    assert not names & {"nasm", "sgdisk", "fsck.fat", "mdir"}, r.stdout
    assert "ok      UEFI loader" in r.stdout and str(installed.venv) in r.stdout


def test_wheel_carries_the_loader_converted_at_build_time(
    installed: Installed, kernel: Path
) -> None:
    """The packaged PE is the checkout's conversion of the same ELF, and it is what goes on
    an image (hvboot build does not convert again: the ESP file's hash is the packaged PE's)."""
    packaged = (installed.bundle / bundle.UEFI_PE).read_bytes()
    assert packaged == artifacts.uefi_loader_pe()
    image = kernel.parent / "inspect.img"
    r = installed.hvboot("build", str(kernel), "-o", str(image))
    assert r.returncode == 0, r.stderr
    r = installed.hvboot("inspect", str(image))
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "/EFI/BOOT/BOOTX64.EFI" in x)
    assert hashlib.sha256(packaged).hexdigest() in line


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_installed_hvboot_test_boots(installed: Installed, kernel: Path, firmware: str) -> None:
    cmdline = f"installed-from-wheel={firmware}"
    r = installed.hvboot("test", str(kernel), "--firmware", firmware, "--cmdline", cmdline)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = parse_report(r.stdout)
    assert report.one("begin")["firmware"] == firmware.upper()
    assert report.one("begin")["loader_version"] == __version__
    assert report.one("cmdline")["text"] == cmdline


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_installed_run_boots_an_image(installed: Installed, kernel: Path, firmware: str) -> None:
    image = kernel.parent / f"run-{firmware}.img"
    assert installed.hvboot("build", str(kernel), "-o", str(image)).returncode == 0
    r = installed.hvboot("run", str(image), "--firmware", firmware)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "HVB end" in r.stdout


def test_installed_debug_loader_has_symbols(
    installed: Installed, kernel: Path, tmp_path: Path
) -> None:
    """The packaged BIOS loader ELF gives GDB stage 2's symbols (the UEFI loader's ELF ships
    the same way; its boot is the slower one, test_debug.py covers it from the checkout)."""
    script = tmp_path / "loader.gdb"
    script.write_text("continue\ncontinue\ninfo symbol $pc\n")
    r = installed.hvboot(
        "debug", str(kernel), "--firmware", "bios", "--loader", "--batch", str(script)
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "stage2_start in section .stage2" in r.stdout, r.stdout[-3000:]


def test_installed_demo_boots_the_prebuilt_hypervisor(installed: Installed) -> None:
    r = installed.hvboot("demo", "--firmware", "bios")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "building the sample hypervisor" not in r.stderr  # prebuilt: no cargo, no sources
    assert "PASS" in r.stderr


def test_new_crate_runs_and_vendored_crates_package(installed: Installed) -> None:
    crate = installed.work / "wheel-kernel"
    r = installed.hvboot("new", "wheel-kernel", "--path", str(crate))
    assert r.returncode == 0, r.stderr
    for text in (p.read_text() for p in crate.rglob("*.toml")):
        assert str(REPO) not in text
    # The crate's own machine file picks SeaBIOS: the faster boot (UEFI is booted above).
    config = crate / "hvboot.toml"
    config.write_text(config.read_text().replace('firmware = "uefi"', 'firmware = "bios"'))
    env = dict(installed.env, CARGO_TARGET_DIR=str(installed.work / "cargo-target"))
    run = subprocess.run(
        ["cargo", "run", "--quiet"],
        cwd=crate,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "hello from wheel-kernel, loaded by hvboot" in run.stdout
    assert f"hvboot {__version__} (BIOS) starting" in run.stdout  # the loader's own first line
    for name in bundle.KERNEL_CRATES:
        manifest = crate / "vendor" / name / "Cargo.toml"
        pack = subprocess.run(
            ["cargo", "package", "--allow-dirty", "--manifest-path", str(manifest)],
            cwd=crate,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert pack.returncode == 0, f"{name}: {pack.stderr[-3000:]}"
        assert "Packaged " in pack.stderr
