"""Measured boot (docs/trust.md, "Measured boot"): under OVMF with a software TPM (swtpm), the
loader extends PCR 8 with hvboot.cfg and the command line and PCR 9 with the kernel's and each
module's BLAKE3 digest; the PCRs read back from swtpm with tpm2-tools equal `predict-pcrs` in
every active bank and move exactly as the inputs do; the kernel finds the event log through the
boot information, a TCG2 log whose PCR 8 and 9 events are the loader's. Without a TPM the
config's policy decides; under BIOS the loader does not measure and says so."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, make_image
from report_kernel import parse_report

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.errors import HvbootError
from hvboot.image.build import BuildResult, build_image
from hvboot.loader import checker, config_file
from hvboot.trust import keys, pcrs
from hvboot.vm import qemu, tpm
from hvboot.vm.machine import Machine

EV_IPL = 13


def _boot(image: Path, firmware: str = "uefi", *, with_tpm: bool = True) -> qemu.RunResult:
    machine = Machine(firmware=firmware, tpm=with_tpm)
    result = qemu.run(qemu.QemuSpec(image, machine, snapshot=True), timeout=BOOT_TIMEOUT)
    assert not _swtpm_left(), "a swtpm outlived its boot"
    return result


def _swtpm_left() -> list[str]:
    """The command lines of swtpm processes this process started that still run. Only our own
    children: the suite's other worker may be booting with a TPM at the same moment."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # The parent's PID is the second field after the parenthesised command name.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        ours = ppid == os.getpid()
        if ours and cmd and cmd[0].endswith(b"swtpm") and b"hvboot-qemu-" in b" ".join(cmd):
            left.append(b" ".join(cmd).decode())
    return left


def _image(tmp: Path, kernel: Path, cmdline: str, guest: bytes, name: str) -> BuildResult:
    module = tmp / f"{name}.guest.bin"
    module.write_bytes(guest)
    other = tmp / f"{name}.other.bin"
    other.write_bytes(b"second module")
    mods = (ModuleSpec(module, "guest.bin", "m=1"), ModuleSpec(other, "other.bin", ""))
    return make_image(tmp, kernel, cmdline, mods, name=f"{name}.img")


def _predicted(image: Path) -> dict[str, dict[int, str]]:
    return pcrs.predict(checker.esp_files(image.read_bytes(), str(image)), str(image))


def _measured(result: qemu.RunResult) -> dict[str, dict[int, str]]:
    assert result.ok, f"{result.outcome}\n{result.serial[-3000:]}"
    assert result.pcrs is not None
    return {b: {i: v[i] for i in (pcrs.PCR_CONFIG, pcrs.PCR_FILES)} for b, v in result.pcrs.items()}


@pytest.mark.boot
def test_the_pcrs_equal_the_prediction_and_the_kernel_gets_the_log(
    tmp_path: Path, report_kernel: Path
) -> None:
    image = _image(tmp_path, report_kernel, "x=1 y=2", b"guest" * 100, "base").output
    result = _boot(image)
    assert _measured(result) == _predicted(image)
    assert set(result.pcrs or {}) >= {"sha256"}
    # The kernel's view: a TCG2 log, parsed to its end, whose PCR 8/9 events are ours.
    report = parse_report(result.serial)
    log = report.one("tpm")
    assert (log["spec_id"], log["to_end"]) == ("1", "1"), log
    assert int(log["events"]) >= 5 and int(log["final"], 16) != 0
    files = checker.esp_files(image.read_bytes(), str(image))
    cfg = files[config_file.CONFIG_PATH.lstrip("/")]

    def blake3(path: str) -> bytes:
        return bytes.fromhex(config_file.digest(files[path.lstrip("/")]))

    paths = ["/hvboot/kernel.elf", "/hvboot/modules/guest.bin", "/hvboot/modules/other.bin"]
    want = [
        (8, cfg, "/" + config_file.CONFIG_PATH),
        (8, b"x=1 y=2", "cmdline: x=1 y=2"),
        *((9, blake3(p), p) for p in paths),
    ]
    got = [
        (int(e["pcr"]), e["sha256_hex"], int(e["type"]), e["data"]) for e in report.all("tpm_event")
    ]
    assert got == [(pcr, hashlib.sha256(d).hexdigest(), EV_IPL, ev) for pcr, d, ev in want]


@pytest.mark.boot
def test_each_input_moves_exactly_its_pcrs(tmp_path: Path, report_kernel: Path) -> None:
    """The config pins every file, so a changed kernel or module moves PCR 8 (the config) and
    PCR 9 (the files); a changed command line moves PCR 8 only."""
    longer = tmp_path / "kernel-longer.elf"
    longer.write_bytes(report_kernel.read_bytes() + bytes(64))  # trailing bytes: same ELF
    variants = {
        "base": (report_kernel, "x=1", b"guest"),
        "kernel": (longer, "x=1", b"guest"),
        "module": (report_kernel, "x=1", b"guest, changed"),
        "cmdline": (report_kernel, "x=2", b"guest"),
    }
    moved = {"kernel": {8, 9}, "module": {8, 9}, "cmdline": {8}}
    got = {}
    for name, (kernel, cmdline, guest) in variants.items():
        image = _image(tmp_path, kernel, cmdline, guest, name).output
        got[name] = _measured(_boot(image))
        assert got[name] == _predicted(image), name
    for name, pcr_set in moved.items():
        for bank, values in got[name].items():
            changed = {i for i, v in values.items() if v != got["base"][bank][i]}
            assert changed == pcr_set, (name, bank)


@pytest.mark.boot
def test_a_signed_image_under_secure_boot_is_measured_as_predicted(
    tmp_path: Path, report_kernel: Path
) -> None:
    """The whole chain: the firmware checks the signed loader, the loader checks and measures
    the files; the signed loader's config pin does not change what is measured."""
    key_dir = tmp_path / "keys"
    keys.new(key_dir)
    cfg = BuildConfig(report_kernel, "sb=1", (), None, None, sign=key_dir, tpm="required")
    image = build_image(cfg, tmp_path / "signed.img").output
    machine = Machine(firmware="uefi", secure_boot=key_dir, tpm=True)
    result = qemu.run(qemu.QemuSpec(image, machine, snapshot=True), timeout=BOOT_TIMEOUT * 2)
    assert _measured(result) == _predicted(image)
    assert parse_report(result.serial).one("cmdline")["text"] == "sb=1"


@pytest.mark.boot
def test_tpm_required_without_a_tpm_is_refused_and_if_present_boots(
    tmp_path: Path, report_kernel: Path
) -> None:
    cfg = BuildConfig(report_kernel, "", (), None, None, tpm="required")
    required = build_image(cfg, tmp_path / "required.img").output
    result = _boot(required, with_tpm=False)
    assert result.loader_error == (
        "/hvboot/hvboot.cfg: tpm required, but there is no TPM to measure into: "
        "the firmware has no EFI_TCG2_PROTOCOL (no TPM 2.0)"
    ), result.serial[-2000:]
    assert "HVB begin" not in result.serial
    plain = make_image(tmp_path, report_kernel, name="plain.img").output
    result = _boot(plain, with_tpm=False)
    assert result.ok, result.outcome
    assert "hvboot: tpm: nothing measured (the firmware has no EFI_TCG2_PROTOCOL" in result.serial
    assert "_words" in parse_report(result.serial).one("tpm")  # `HVB tpm none`


@pytest.mark.boot
def test_under_bios_the_loader_does_not_measure(tmp_path: Path, report_kernel: Path) -> None:
    """SeaBIOS has a TPM and measures its own PCRs 0-7; the BIOS loader measures nothing and
    says so (`if-present`), and refuses `tpm required` by that reason."""
    plain = make_image(tmp_path, report_kernel, name="plain.img").output
    result = _boot(plain, "bios")
    assert _measured(result) == {
        bank: {i: "0" * len(v[i]) for i in (8, 9)} for bank, v in (result.pcrs or {}).items()
    }
    assert "hvboot: tpm: nothing measured (this loader measures only under UEFI" in result.serial
    cfg = BuildConfig(report_kernel, "", (), None, None, tpm="required")
    result = _boot(build_image(cfg, tmp_path / "required.img").output, "bios")
    assert result.loader_error == (
        "/hvboot/hvboot.cfg: tpm required, but there is no TPM to measure into: "
        "this loader measures only under UEFI (EFI_TCG2_PROTOCOL)"
    ), result.serial[-2000:]


@pytest.mark.boot
def test_hvboot_test_tpm_says_the_pcrs_are_as_predicted(
    tmp_path: Path, report_kernel: Path
) -> None:
    image = make_image(tmp_path, report_kernel, "cli=1").output
    out = subprocess.run(
        [sys.executable, "-m", "hvboot", "test", str(image), "--tpm"],
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT * 2,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    said = [line for line in (out.stdout + out.stderr).splitlines() if "hvboot: tpm: sha" in line]
    assert len(said) == 8 and all(line.endswith("(as predicted)") for line in said), said
    printed = subprocess.run(
        [sys.executable, "-m", "hvboot", "predict-pcrs", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert printed == pcrs.text(_predicted(image))


def test_pcrread_output_is_parsed_by_bank() -> None:
    text = "  sha1:\n    8 : 0x00AB\n  sha256:\n    8 : 0xFF\n    23: 0x01\n"
    assert tpm.parse_pcrread(text) == {"sha1": {8: "00ab"}, "sha256": {8: "ff", 23: "01"}}


def test_predict_pcrs_names_what_is_missing(tmp_path: Path, report_kernel: Path) -> None:
    image = make_image(tmp_path, report_kernel, "x=1").output
    files = checker.esp_files(image.read_bytes(), str(image))
    kernel = next(p for p in files if p.endswith("kernel.elf"))
    without_kernel = {p: d for p, d in files.items() if p != kernel}
    with pytest.raises(HvbootError) as e:
        pcrs.measurements(without_kernel, str(image))
    assert e.value.where == f"{image}: /{kernel}"
    assert e.value.what == "named in hvboot.cfg but not on the ESP"
    cfg = config_file.CONFIG_PATH.lstrip("/")
    with pytest.raises(HvbootError) as e:
        pcrs.measurements({p: d for p, d in files.items() if p != cfg}, str(image))
    assert (e.value.where, e.value.what) == (f"{image}: {config_file.CONFIG_PATH}", "missing")
    # Through the CLI: the same words, exit status 2, no traceback.
    not_an_image = tmp_path / "not-an-image.img"
    not_an_image.write_bytes(bytes(4096))
    r = subprocess.run(
        [sys.executable, "-m", "hvboot", "predict-pcrs", str(not_an_image)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and str(not_an_image) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
