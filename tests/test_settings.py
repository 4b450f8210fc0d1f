"""The settings table (src/hvboot/config/settings.py): every setting declared once, layered
default < file < flag, the `[machine]` table checked, the crate's hvboot.toml discovered, and a
real boot whose machine comes from an hvboot.toml."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPORT_KERNEL
from report_kernel import parse_report

from hvboot.cli.main import _parser
from hvboot.config import settings
from hvboot.errors import HvbootError
from hvboot.loader import artifacts
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

MIB = 1 << 20


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "kernel.elf").write_bytes(b"\x7fELF")
    (tmp_path / "guest.bin").write_bytes(b"guest")
    (tmp_path / "other.bin").write_bytes(b"other")
    return tmp_path


def write(project: Path, text: str) -> Path:
    path = project / "hvboot.toml"
    path.write_text(text)
    return path


def parse(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


def error(path: Path) -> HvbootError:
    with pytest.raises(HvbootError) as info:
        settings.read_file(path)
    return info.value


# --- the table ----------------------------------------------------------------------------------


def test_every_setting_has_a_key_a_cli_form_a_type_and_help() -> None:
    keys = [s.path for s in settings.SETTINGS]
    assert len(set(keys)) == len(keys)
    flags = [f for s in settings.SETTINGS for f in s.flags]
    assert len(set(flags)) == len(flags)
    for s in settings.SETTINGS:
        assert s.key and s.kind and s.help.endswith(".") and s.verbs, s.name
        assert s.flags or s.positional, f"{s.name}: no flag and no positional form"


def test_machine_defaults_are_the_tables() -> None:
    machine = settings.resolve("run", None, None).machine
    assert machine == Machine()
    fields = {f.name for f in dataclasses.fields(Machine)}
    assert fields == {s.name for s in settings.SETTINGS if s.table == "machine"}


def test_every_verb_gets_its_flags() -> None:
    verbs = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for s in settings.SETTINGS:
        for verb in s.verbs:
            known = {f for a in verbs[verb]._actions for f in a.option_strings}
            assert set(s.flags) <= known, f"hvboot {verb} lacks {s.flags}"


def test_committed_doc_matches_the_table() -> None:
    text = (artifacts.REPO / settings.DOC_PATH).read_text()
    assert settings.render_doc(text) == text, "docs/config.md is stale: run `hvboot gen-docs`"


def test_demo_defaults_come_from_the_table() -> None:
    s = settings.resolve("demo", parse("demo"), None)
    assert s.machine == Machine(timeout=180.0, cpus=4)
    assert settings.resolve("demo", parse("demo", "--cpus", "2"), None).machine.cpus == 2
    assert parse("demo", "--firmware", "bios", "--firmware", "uefi").firmwares == ["bios", "uefi"]


# --- precedence ---------------------------------------------------------------------------------


MACHINE = '[machine]\nfirmware = "bios"\nmemory = "1G"\ncpus = 2\ntype = "pc"\ntimeout = 30\n'


def test_file_overrides_default(project: Path) -> None:
    path = write(project, 'cmdline = "from-file"\n' + MACHINE)
    s = settings.resolve("test", parse("test"), path)
    assert s.cmdline == "from-file"
    assert s.machine == Machine(
        firmware="bios", memory="1024M", cpus=2, type="pc", cpu="max", timeout=30.0
    )


def test_flag_overrides_file(project: Path) -> None:
    path = write(project, 'cmdline = "from-file"\n' + MACHINE)
    args = parse(
        "test", "--cmdline", "flag", "--cpus", "4", "--machine", "q35", "k.elf", "--", "-s"
    )
    s = settings.resolve("test", args, path)
    assert s.cmdline == "flag"
    assert (s.machine.cpus, s.machine.type, s.machine.qemu_args) == (4, "q35", ("-s",))
    assert (s.machine.firmware, s.machine.memory) == ("bios", "1024M")  # not given: the file's


def test_module_flags_replace_the_files_modules(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    path = write(project, '[[modules]]\npath = "guest.bin"\n')
    kept = settings.resolve("build", parse("build"), path)
    assert [m.name for m in kept.modules] == ["guest.bin"]
    replaced = settings.resolve("build", parse("build", "--module", "other.bin:x=1"), path)
    assert [(m.name, m.cmdline) for m in replaced.modules] == [("other.bin", "x=1")]


def test_build_kernel_argument_overrides_the_files(project: Path) -> None:
    path = write(project, 'kernel = "kernel.elf"\noutput = "disk.img"\n')
    other = project / "other.elf"
    other.write_bytes(b"\x7fELF")
    s = settings.resolve("build", parse("build", str(other), "--config", str(path)), path)
    assert s.kernel == other and s.output == project / "disk.img"


# --- the [machine] table: errors name the file and the key -------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('cpus = "2"', "machine.cpus", 'expected an integer of at least 1, got string "2"'),
        ("cpus = 0", "machine.cpus", "expected an integer of at least 1, got integer 0"),
        ('firmware = "coreboot"', "machine.firmware", 'expected "uefi" or "bios"'),
        ('memory = "lots"', "machine.memory", 'invalid size "lots"'),
        ('memory = "1000K"', "machine.memory", "not a multiple of 1048576 bytes"),
        ("timeout = 0", "machine.timeout", "expected a number of seconds greater than 0"),
        ('qemu_args = "-s"', "machine.qemu_args", "expected an array of strings"),
        ('type = ""', "machine.type", "expected a non-empty string"),
        ('accel = "hvf"', "machine.accel", 'expected "tcg" or "kvm", got string "hvf"'),
    ],
)
def test_machine_value_errors(project: Path, text: str, key: str, message: str) -> None:
    path = write(project, f"[machine]\n{text}\n")
    err = error(path)
    assert err.where == f"{path}: {key}"
    assert message in err.what


def test_unknown_machine_key_is_refused(project: Path) -> None:
    path = write(project, '[machine]\ncpus = 2\nmemroy = "1G"\n')
    err = error(path)
    assert err.where == f"{path}: machine.memroy"
    assert "unknown key (known keys: firmware, memory, cpus, type, cpu, timeout" in err.what
    assert "did you mean 'memory'?" in err.what


def test_machine_must_be_a_table(project: Path) -> None:
    path = write(project, 'machine = "q35"\n')
    err = error(path)
    assert err.where == f"{path}: machine" and "expected a table ([machine])" in err.what


def test_memory_is_as_qemus_m() -> None:
    check = next(s for s in settings.SETTINGS if s.name == "memory").check
    assert check(512, "m", Path()) == "512M"
    assert check("2G", "m", Path()) == "2048M"
    assert check("1T", "m", Path()) == "1048576M"


# --- discovery (the cargo-runner case) ----------------------------------------------------------


def test_discovery_walks_up_to_the_crate(tmp_path: Path) -> None:
    crate = tmp_path / "crate"
    (crate / "src" / "deep").mkdir(parents=True)
    (crate / "Cargo.toml").write_text("[package]\n")
    assert settings.discover(crate / "src" / "deep") is None
    (crate / "hvboot.toml").write_text("")
    assert settings.discover(crate / "src" / "deep") == crate / "hvboot.toml"
    assert settings.discover(crate) == crate / "hvboot.toml"
    (crate / "src" / "hvboot.toml").write_text("")  # the nearest wins
    assert settings.discover(crate / "src" / "deep") == crate / "src" / "hvboot.toml"


def test_discovery_stops_at_the_crate_and_needs_one(tmp_path: Path) -> None:
    (tmp_path / "hvboot.toml").write_text("")  # above the crate: not its file
    crate = tmp_path / "crate"
    crate.mkdir()
    (crate / "Cargo.toml").write_text("[package]\n")
    assert settings.discover(crate) is None
    loose = tmp_path / "loose"
    loose.mkdir()
    # No Cargo.toml on the way up (tmp_path's parents hold none): nothing is discovered, not
    # even tmp_path's hvboot.toml.
    assert settings.discover(loose) is None


# --- through the CLI ----------------------------------------------------------------------------


def hvboot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_build_config_and_flags_combine(tmp_path: Path, built: None) -> None:
    cfg = tmp_path / "hvboot.toml"
    cfg.write_text(f'kernel = "{REPORT_KERNEL}"\ncmdline = "a"\noutput = "file.img"\n')
    out = tmp_path / "flag.img"
    r = hvboot("build", "--config", str(cfg), "--cmdline", "b", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.is_file() and not (tmp_path / "file.img").exists()


def test_bad_machine_key_through_the_runner(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text("[package]\n")
    (tmp_path / "hvboot.toml").write_text("[machine]\ncpus = -1\n")
    r = hvboot("test", "whatever.elf", cwd=tmp_path)
    assert r.returncode == 2
    assert "hvboot.toml: machine.cpus: expected an integer of at least 1" in r.stderr


@pytest.mark.boot
def test_runner_boots_on_the_crates_machine(tmp_path: Path, built: None) -> None:
    """A crate's hvboot.toml [machine] (BIOS, 2 CPUs, 256 MiB) reaches the kernel, as
    `cargo run` with `runner = "hvboot test"` would start it: in the crate, with the ELF."""
    (tmp_path / "Cargo.toml").write_text("[package]\n")
    (tmp_path / "hvboot.toml").write_text(
        '[machine]\nfirmware = "bios"\ncpus = 2\nmemory = "256M"\ntimeout = 120\n'
    )
    (tmp_path / "src").mkdir()
    r = hvboot("test", str(REPORT_KERNEL), cwd=tmp_path / "src")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"settings from {tmp_path / 'hvboot.toml'}" in r.stderr
    assert "under BIOS" in r.stderr
    report = parse_report(r.stdout)
    assert report.one("begin")["firmware"] == "BIOS"
    assert report.int("cpus", "count") == 2
    usable = int(report.one("memory")["usable_bytes"])
    assert 200 * MIB < usable <= 256 * MIB
    # A flag overrides the file: 1 CPU.
    r = hvboot("test", str(REPORT_KERNEL), "--cpus", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert parse_report(r.stdout).int("cpus", "count") == 1


# --- the accelerator -----------------------------------------------------------------------------


def test_accel_reaches_qemus_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(512))
    spec = qemu.QemuSpec(image=image, machine=Machine(firmware="bios"))
    cmd = qemu.command(spec, None)
    assert cmd[cmd.index("-machine") + 1] == "q35,accel=tcg"
    assert parse("run", "k", "--accel", "kvm").accel == "kvm"
    kvm = tmp_path / "kvm"
    kvm.touch()
    monkeypatch.setattr(qemu, "KVM_DEVICE", kvm)
    spec = dataclasses.replace(spec, machine=Machine(firmware="bios", accel="kvm"))
    cmd = qemu.command(spec, None)
    assert cmd[cmd.index("-machine") + 1] == "q35,accel=kvm"


def test_accel_kvm_without_dev_kvm_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(512))
    missing = tmp_path / "no-kvm"
    monkeypatch.setattr(qemu, "KVM_DEVICE", missing)
    spec = qemu.QemuSpec(image=image, machine=Machine(firmware="bios", accel="kvm"))
    with pytest.raises(HvbootError) as e:
        qemu.command(spec, None)
    assert e.value.where == "--accel kvm"
    assert f"{missing} does not exist" in e.value.what and "--accel tcg" in e.value.what


def test_kvm_msr_abort_gets_its_hint() -> None:
    said = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nAssertion failed"
    assert "--cpu max,-arch-capabilities" in qemu.kvm_hint(said)
    assert qemu.kvm_hint("qemu-system-x86_64: some other error") == ""
