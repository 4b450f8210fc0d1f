"""Secure Boot with a key set of one's own (docs/trust.md): OVMF's Secure Boot build with the
set's PK, KEK and db enrolled, enforcing. A `--sign` image boots; an unsigned loader and a signed
loader changed afterwards are refused by the firmware, and `hvboot test`'s verdict says so from
the firmware's own line, not after a timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, make_image, replace_on_esp
from report_kernel import parse_report

from hvboot.config.build import BuildConfig
from hvboot.image.build import EFI_BOOT_PATH, BuildResult, build_image
from hvboot.trust import keys
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sb") / "keys"
    keys.new(d)
    return d


def _boot(image: Path, key_dir: Path) -> qemu.RunResult:
    machine = Machine(firmware="uefi", secure_boot=key_dir)
    return qemu.run(qemu.QemuSpec(image, machine, snapshot=True), timeout=BOOT_TIMEOUT)


def _signed(tmp: Path, kernel: Path, key_dir: Path) -> BuildResult:
    return build_image(BuildConfig(kernel, "sb=1", (), None, None, sign=key_dir), tmp / "s.img")


def test_a_signed_image_boots(tmp_path: Path, report_kernel: Path, key_dir: Path) -> None:
    result = _boot(_signed(tmp_path, report_kernel, key_dir).output, key_dir)
    assert result.ok, result.outcome + result.serial[-2000:]
    assert parse_report(result.serial).one("cmdline")["text"] == "sb=1"


def _refused(result: qemu.RunResult) -> None:
    assert not result.ok and not result.timed_out, result.outcome
    assert "HVB begin" not in result.serial and "hvboot:" not in result.serial
    assert result.outcome.startswith("Secure Boot refused the loader (firmware: BdsDxe: failed")
    assert result.outcome.endswith(": Access Denied)"), result.outcome


def test_an_unsigned_loader_is_refused(tmp_path: Path, report_kernel: Path, key_dir: Path) -> None:
    _refused(_boot(make_image(tmp_path, report_kernel).output, key_dir))


def test_a_loader_changed_after_signing_is_refused(
    tmp_path: Path, report_kernel: Path, key_dir: Path
) -> None:
    image = _signed(tmp_path, report_kernel, key_dir)
    pe = bytearray(next(f.data for f in image.files if f.path == EFI_BOOT_PATH))
    pe[len(pe) // 2] ^= 1  # inside the signed image data, before the certificate table
    replace_on_esp(image, f"/{EFI_BOOT_PATH}", bytes(pe), tmp_path, repin=False)
    _refused(_boot(image.output, key_dir))
