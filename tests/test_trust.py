"""The chain of trust with a key set of one's own (docs/trust.md): `hvboot keys new`, and an
image built with `--sign`: its UEFI loader carries an Authenticode signature by the db key that
sbverify accepts, both loaders pin hvboot.cfg's BLAKE3 digest, `inspect` shows both, and a config
replaced after the build is refused by the loader under BIOS and UEFI (the kernel never runs),
while the image as built boots."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, boot_report, replace_on_esp

from hvboot.cli.inspect import inspect_path
from hvboot.config.build import BuildConfig
from hvboot.errors import HvbootError
from hvboot.image.build import EFI_BOOT_PATH, BuildResult, build_image
from hvboot.loader import config_file
from hvboot.trust import keys


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys") / "keys"
    keys.new(d)
    return d


@pytest.fixture
def signed(tmp_path: Path, report_kernel: Path, key_dir: Path) -> BuildResult:
    cfg = BuildConfig(report_kernel, "x=1", (), None, None, sign=key_dir)
    return build_image(cfg, tmp_path / "signed.img")


def test_keys_new_writes_a_set_and_never_overwrites(tmp_path: Path) -> None:
    d = tmp_path / "k"
    written = keys.new(d)
    assert sorted(p.name for p in written) == sorted(
        ["PK.key", "PK.crt", "KEK.key", "KEK.crt", "db.key", "db.crt", "GUID.txt"]
    )
    before = {p: p.read_bytes() for p in written}
    with pytest.raises(HvbootError) as err:
        keys.new(d)
    assert err.value.where == str(d / "PK.key") and "never overwrites" in err.value.what
    assert {p: p.read_bytes() for p in written} == before
    (d / "db.key").unlink()
    with pytest.raises(HvbootError):  # one file left is enough to refuse
        keys.new(d)
    assert keys.owner_guid(d).version == 4


def test_signed_image_is_signed_and_pins_its_config(
    signed: BuildResult, key_dir: Path, tmp_path: Path
) -> None:
    pe = next(f.data for f in signed.files if f.path == EFI_BOOT_PATH)
    efi = tmp_path / "BOOTX64.EFI"
    efi.write_bytes(pe)
    verify = ["sbverify", "--cert", str(key_dir / "db.crt"), str(efi)]
    assert subprocess.run(verify, capture_output=True).returncode == 0
    other = tmp_path / "other"
    keys.new(other)
    verify[2] = str(other / "db.crt")
    assert subprocess.run(verify, capture_output=True).returncode != 0, "any key verifies"
    cfg = next(f.data for f in signed.files if f.path == config_file.CONFIG_PATH)
    trust = inspect_path(signed.output)["trust"]
    assert trust["signers"] == ["CN=hvboot db"]
    assert trust["uefi_config_pin"] == trust["bios_config_pin"] == config_file.digest(cfg)
    [kernel] = trust["file_pins"]
    assert kernel["pinned"] == kernel["actual"] is not None


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_signed_image_boots(signed: BuildResult, firmware: str) -> None:
    _, report = boot_report(signed.output, firmware)
    assert report.one("cmdline")["text"] == "x=1"


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_a_replaced_config_is_refused(signed: BuildResult, firmware: str, tmp_path: Path) -> None:
    old = next(f.data for f in signed.files if f.path == config_file.CONFIG_PATH)
    new = old.replace(b"x=1", b"x=2")
    replace_on_esp(signed, f"/{config_file.CONFIG_PATH}", new, tmp_path, repin=False)
    result = boot(signed.output, firmware)
    assert not result.ok and "HVB begin" not in result.serial, "the kernel ran"
    assert result.loader_error == (
        f"/{config_file.CONFIG_PATH}: blake3 mismatch: expected {config_file.digest(old)}, "
        f"got {config_file.digest(new)}"
    ), result.serial[-3000:]
