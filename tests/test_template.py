"""`hvboot new`: the generated kernel crate builds with stable cargo, `cargo run` boots it, and
`cargo test` boots each test kernel through `hvboot test`, passing and failing as they do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hvboot.config import settings

FAILING_TEST = """\
#![no_std]
#![no_main]

use hvboot_api::{entry_point, BootInfo};
use hvboot_rt as _;

entry_point!(test_main);

fn test_main(info: &'static BootInfo) -> ! {
    assert_eq!(info.cmdline(), "this is not the command line", "deliberate failure");
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info)
}
"""


def hvboot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture(scope="session")
def cargo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One target directory for every generated crate: hvboot-api is compiled once."""
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(tmp_path_factory.mktemp("cargo-target"))
    # The runner is `hvboot test` of this interpreter's environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def cargo(crate: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cargo", *args], cwd=crate, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def crate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("crates") / "my-kernel"
    r = hvboot("new", "my-kernel", "--path", str(dest))
    assert r.returncode == 0, r.stderr
    return dest


def test_files(crate: Path) -> None:
    for rel in (
        "Cargo.toml",
        "build.rs",
        ".cargo/config.toml",
        "src/main.rs",
        "tests/basic_boot.rs",
    ):
        assert (crate / rel).is_file(), rel
    config = (crate / ".cargo/config.toml").read_text()
    runner = re.search(r'runner = \["([^"]+)", "test"\]', config)
    assert runner is not None and Path(runner.group(1)).is_absolute()
    assert Path(runner.group(1)).name == "hvboot"
    assert "relocation-model=static" in config and "code-model=kernel" in config
    manifest = (crate / "Cargo.toml").read_text()
    assert "hvboot-api = { path = " in manifest and "harness = false" in manifest
    main = (crate / "src/main.rs").read_text()
    assert "use hvboot_api::{entry_point" in main and "entry_point!(kernel_main);" in main
    # The crate's hvboot.toml is what the cargo runner discovers: a valid [machine] table with
    # the table's defaults (the timeout only commented: `run` has none).
    values = settings.read_file(crate / "hvboot.toml")
    assert values == {
        "firmware": "uefi",
        "memory": "512M",
        "cpus": 1,
        "type": "q35",
        "cpu": "max",
        "accel": "tcg",
    }
    assert "# timeout = 120" in (crate / "hvboot.toml").read_text()


def test_refuses_existing_directory_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    r = hvboot("new", "taken", "--path", str(tmp_path / "taken"))
    assert r.returncode == 2 and "already exists" in r.stderr
    r = hvboot("new", "9lives", "--path", str(tmp_path / "x"))
    assert r.returncode == 2 and "crate name" in r.stderr


@pytest.mark.boot
def test_cargo_run_boots_the_kernel(crate: Path, cargo_env: dict[str, str]) -> None:
    r = cargo(crate, cargo_env, "run")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "hello from my-kernel, loaded by hvboot" in r.stdout
    assert "PASS: the kernel reported success" in r.stderr


@pytest.mark.boot
def test_cargo_test_passes(crate: Path, cargo_env: dict[str, str]) -> None:
    r = cargo(crate, cargo_env, "test")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "basic_boot: ok" in r.stdout
    assert "PASS" in r.stderr


@pytest.mark.boot
def test_cargo_test_fails_with_a_failing_test(
    tmp_path: Path, crate: Path, cargo_env: dict[str, str]
) -> None:
    work = tmp_path / "failing-kernel"
    shutil.copytree(crate, work)
    (work / "tests" / "fails.rs").write_text(FAILING_TEST)
    manifest = work / "Cargo.toml"
    manifest.write_text(
        manifest.read_text().replace(
            '[[test]]\nname = "basic_boot"\nharness = false\n',
            '[[test]]\nname = "basic_boot"\nharness = false\n\n'
            '[[test]]\nname = "fails"\nharness = false\n',
        )
    )
    r = cargo(work, cargo_env, "test", "--test", "fails")
    assert r.returncode != 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "deliberate failure" in r.stdout  # the panic message, from COM1
    assert "FAIL: the kernel reported failure" in r.stderr
    assert "exit status: 1" in r.stderr or "exit status 1" in r.stderr


@pytest.mark.boot
def test_debug_the_template_kernel(tmp_path: Path, crate: Path, cargo_env: dict[str, str]) -> None:
    """docs/getting-started.md's GDB step: break at the entry, RDI = &BootInfo, then at main
    with source lines (the template keeps DWARF)."""
    r = cargo(crate, cargo_env, "build")
    assert r.returncode == 0, r.stderr[-3000:]
    kernel = Path(cargo_env["CARGO_TARGET_DIR"]) / "debug" / "my-kernel"
    script = tmp_path / "s.gdb"
    script.write_text("continue\nx/gx $rdi\nhbreak my_kernel::kernel_main\ncontinue\ninfo source\n")
    r = hvboot("debug", str(kernel), "--batch", str(script), "--timeout", "240")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r":\s+0x4942544f4f425648\b", r.stdout), r.stdout[-3000:]
    assert "my_kernel::kernel_main" in r.stdout and "main.rs" in r.stdout
