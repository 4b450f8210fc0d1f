"""Tests for hvboot.config.build: the hvboot.toml build configuration and --module arguments."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hvboot.config.build import (
    MAX_CMDLINE_BYTES,
    BuildConfig,
    ModuleSpec,
    check_unique_names,
    module_arg,
    parse_size,
)
from hvboot.config.settings import load_config
from hvboot.errors import HvbootError


def toml_str(value: str) -> str:
    """`value` as a TOML basic string."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a kernel and two module files."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "kernel.elf").write_bytes(b"\x7fELF")
    (tmp_path / "guests").mkdir()
    (tmp_path / "guests" / "guest.bin").write_bytes(b"guest")
    (tmp_path / "guests" / "initrd.img").write_bytes(b"initrd")
    return tmp_path


def write(project: Path, text: str, name: str = "hvboot.toml") -> Path:
    path = project / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> HvbootError:
    with pytest.raises(HvbootError) as info:
        load_config(path)
    return info.value


KERNEL = 'kernel = "build/kernel.elf"\n'


# ---------------------------------------------------------------------------
# Happy paths


def test_full_config(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = write(
        project,
        """
kernel = "build/kernel.elf"
cmdline = "console=ttyS0 loglevel=3"
output = "out/disk.img"
image_size = "64M"

[[modules]]
path = "guests/guest.bin"
name = "guest"
cmdline = "root=/dev/vda quiet"

[[modules]]
path = "guests/initrd.img"
""",
    )
    elsewhere = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)  # relative paths follow the TOML file, not the cwd
        cfg = load_config(path)
    assert cfg == BuildConfig(
        kernel=project / "build" / "kernel.elf",
        cmdline="console=ttyS0 loglevel=3",
        modules=(
            ModuleSpec(project / "guests" / "guest.bin", "guest", "root=/dev/vda quiet"),
            ModuleSpec(project / "guests" / "initrd.img", "initrd.img", ""),
        ),
        output=project / "out" / "disk.img",
        image_size=64 * 1024 * 1024,
    )
    assert cfg.kernel.is_absolute()


def test_minimal_config(project: Path) -> None:
    cfg = load_config(str(write(project, KERNEL)))
    assert cfg == BuildConfig(
        kernel=project / "build" / "kernel.elf",
        cmdline="",
        modules=(),
        output=None,
        image_size=None,
    )


def test_relative_config_path(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "conf").mkdir()
    write(project, 'kernel = "../build/kernel.elf"\noutput = "disk.img"\n', "conf/hv.toml")
    monkeypatch.chdir(project)
    cfg = load_config(Path("conf/hv.toml"))
    assert cfg.kernel.is_absolute()
    assert cfg.kernel.resolve() == (project / "build" / "kernel.elf").resolve()
    assert cfg.output == project / "conf" / "disk.img"


def test_absolute_paths_and_int_size(project: Path) -> None:
    kernel = project / "build" / "kernel.elf"
    text = f"kernel = {toml_str(str(kernel))}\nimage_size = 1048576\nmodules = []\n"
    cfg = load_config(write(project, text))
    assert cfg.kernel == kernel
    assert cfg.image_size == 1 << 20
    assert cfg.modules == ()


def test_inline_module_tables(project: Path) -> None:
    text = KERNEL + 'modules = [{ path = "guests/guest.bin" }, { path = "guests/initrd.img" }]\n'
    cfg = load_config(write(project, text))
    assert [m.name for m in cfg.modules] == ["guest.bin", "initrd.img"]


def test_cmdline_at_limit(project: Path) -> None:
    cmdline = "é" * (MAX_CMDLINE_BYTES // 2)  # 2 bytes each: exactly the limit
    cfg = load_config(write(project, KERNEL + f"cmdline = {toml_str(cmdline)}\n"))
    assert cfg.cmdline == cmdline


def test_module_name_at_limit(project: Path) -> None:
    name = "n" * 64
    text = KERNEL + f'[[modules]]\npath = "guests/guest.bin"\nname = "{name}"\n'
    assert load_config(write(project, text)).modules[0].name == name


# ---------------------------------------------------------------------------
# File-level errors


def test_missing_config(tmp_path: Path) -> None:
    err = config_error(tmp_path / "hvboot.toml")
    assert err.where == str(tmp_path / "hvboot.toml")
    assert err.what == "config file not found"


def test_config_is_directory(tmp_path: Path) -> None:
    assert "is a directory" in config_error(tmp_path).what


def test_not_utf8(project: Path) -> None:
    path = project / "hvboot.toml"
    path.write_bytes(b'kernel = "build/kernel.elf"\ncmdline = "\xff"\n')
    err = config_error(path)
    assert err.where == f"{path}: line 2"
    assert "not valid UTF-8" in err.what


def test_toml_syntax_error(project: Path) -> None:
    path = write(project, KERNEL + 'cmdline = "a" "b"\n')
    err = config_error(path)
    assert err.where == f"{path}: line 2, column 15"
    assert err.what.startswith("TOML syntax error: ")
    assert "(at line" not in err.what


def test_toml_syntax_error_missing_value(project: Path) -> None:
    path = write(project, KERNEL + "image_size =")
    err = config_error(path)
    assert err.where == f"{path}: end of file (line 2)"
    assert err.what == "TOML syntax error: Invalid value"


def test_toml_unterminated_string(project: Path) -> None:
    path = write(project, KERNEL + "cmdline = 'unterminated\n")
    err = config_error(path)
    assert err.where == f"{path}: end of file (line 3)"
    assert err.what.startswith("TOML syntax error: Expected")


def test_toml_duplicate_key(project: Path) -> None:
    path = write(project, KERNEL + KERNEL)
    assert "TOML syntax error" in config_error(path).what


# ---------------------------------------------------------------------------
# Keys and types


def test_unknown_top_level_key(project: Path) -> None:
    path = write(project, 'kernel_path = "build/kernel.elf"\n')
    err = config_error(path)
    assert err.where == f"{path}: kernel_path"
    assert err.what.startswith(
        "unknown key (known keys: kernel, cmdline, output, image_size, iso, netboot, sign, "
        "tpm_policy, modules, machine)"
    )
    assert "did you mean 'kernel'?" in err.what


def test_unknown_key_without_suggestion(project: Path) -> None:
    err = config_error(write(project, KERNEL + "zzz = 1\n"))
    assert str(err.where).endswith("hvboot.toml: zzz")
    assert "did you mean" not in err.what


def test_unknown_module_key(project: Path) -> None:
    path = write(project, KERNEL + '[[modules]]\npath = "guests/guest.bin"\nnmae = "g"\n')
    err = config_error(path)
    assert err.where == f"{path}: modules[0].nmae"
    assert "unknown key (known keys: path, name, cmdline)" in err.what
    assert "did you mean 'name'?" in err.what


def test_missing_kernel(project: Path) -> None:
    path = write(project, 'cmdline = "x"\n')
    err = config_error(path)
    assert err.where == f"{path}: kernel"
    assert err.what.startswith("missing required key")


@pytest.mark.parametrize(
    ("line", "where", "got"),
    [
        ("kernel = 5", "kernel", "expected a string, got integer 5"),
        ('kernel = ["a"]', "kernel", "expected a string, got array"),
        ("kernel = true", "kernel", "expected a string, got boolean true"),
        ("kernel = 1.5", "kernel", "expected a string, got float 1.5"),
        ("kernel = 1979-05-27", "kernel", "expected a string, got date 1979-05-27"),
        ("kernel = 07:32:00", "kernel", "expected a string, got time 07:32:00"),
        (
            "kernel = 1979-05-27T07:32:00",
            "kernel",
            "expected a string, got datetime 1979-05-27T07:32:00",
        ),
        ("kernel.path = 'x'", "kernel", "expected a string, got table"),
        (KERNEL + "cmdline = 3", "cmdline", "expected a string, got integer 3"),
        (KERNEL + "output = false", "output", "expected a string, got boolean false"),
        (KERNEL + 'modules = "g.bin"', "modules", 'got string "g.bin"'),
        (KERNEL + "[modules]\npath = 'x'", "modules", "expected an array of tables"),
        (KERNEL + "modules = [1]", "modules[0]", "expected a table ([[modules]]), got integer 1"),
        (KERNEL + "[[modules]]\npath = 7", "modules[0].path", "expected a string, got integer 7"),
        (
            KERNEL + "[[modules]]\npath = 'guests/guest.bin'\nname = 1",
            "modules[0].name",
            "expected a string, got integer 1",
        ),
    ],
)
def test_wrong_types(project: Path, line: str, where: str, got: str) -> None:
    path = write(project, line + "\n")
    err = config_error(path)
    assert err.where == f"{path}: {where}"
    assert got in err.what


def test_module_cmdline_type_error_matches_documented_example(project: Path) -> None:
    mods = "".join(f'[[modules]]\npath = "guests/guest.bin"\nname = "m{i}"\n' for i in range(2))
    path = write(project, KERNEL + mods + '[[modules]]\npath = "guests/initrd.img"\ncmdline = 5\n')
    err = config_error(path)
    assert str(err) == f"{path}: modules[2].cmdline: expected a string, got integer 5"


def test_long_string_value_is_clipped(project: Path) -> None:
    err = config_error(write(project, KERNEL + f"modules = {toml_str('x' * 500)}\n"))
    assert 'got string "xxxxxxxx' in err.what
    assert '..."' not in err.what and "..." in err.what
    assert len(err.what) < 120


# ---------------------------------------------------------------------------
# Paths


def test_kernel_not_found(project: Path) -> None:
    path = write(project, 'kernel = "build/missing.elf"\n')
    err = config_error(path)
    assert err.where == f"{path}: kernel"
    assert f"file not found: {project / 'build' / 'missing.elf'}" in err.what
    assert f"resolved against {project}" in err.what


def test_kernel_is_directory(project: Path) -> None:
    err = config_error(write(project, 'kernel = "build"\n'))
    assert err.what == f"{project / 'build'} is a directory, expected a file"


def test_kernel_is_not_regular_file(project: Path) -> None:
    fifo = project / "fifo"
    os.mkfifo(fifo)
    err = config_error(write(project, 'kernel = "fifo"\n'))
    assert err.what == f"{fifo} is not a regular file"


def test_empty_and_nul_paths(project: Path) -> None:
    err = config_error(write(project, 'kernel = ""\n'))
    assert str(err.where).endswith(": kernel") and "path is empty" in err.what
    err = config_error(write(project, 'kernel = "a\\u0000b"\n'))
    assert "NUL" in err.what
    err = config_error(write(project, KERNEL + 'output = ""\n'))
    assert str(err.where).endswith(": output") and "path is empty" in err.what


def test_module_missing_path(project: Path) -> None:
    path = write(project, KERNEL + '[[modules]]\nname = "g"\n')
    err = config_error(path)
    assert err.where == f"{path}: modules[0].path"
    assert err.what.startswith("missing required key")


def test_module_not_found(project: Path) -> None:
    text = (
        KERNEL + '[[modules]]\npath = "guests/guest.bin"\n[[modules]]\npath = "guests/nope.bin"\n'
    )
    path = write(project, text)
    err = config_error(path)
    assert err.where == f"{path}: modules[1].path"
    assert f"file not found: {project / 'guests' / 'nope.bin'}" in err.what


def test_module_is_directory(project: Path) -> None:
    err = config_error(write(project, KERNEL + '[[modules]]\npath = "guests"\n'))
    assert str(err.where).endswith("modules[0].path")
    assert "is a directory" in err.what


# ---------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a/b", "contains '/'"),
        ("a\\\\b", "contains '\\'"),
        ("bell\\u0007", "non-printable character U+0007"),
        ("tab\\tname", "non-printable character U+0009"),
        ("line\\u2028sep", "non-printable character U+2028"),
        ("x" * 65, "is 65 bytes long, longer than the limit of 64 bytes"),
        ("ü" * 33, "is 66 bytes long"),
        ("", "module name is empty"),
    ],
)
def test_bad_module_name(project: Path, name: str, fragment: str) -> None:
    path = write(project, KERNEL + f'[[modules]]\npath = "guests/guest.bin"\nname = "{name}"\n')
    err = config_error(path)
    assert err.where == f"{path}: modules[0].name"
    assert fragment in err.what


def test_default_name_too_long(project: Path) -> None:
    long_file = project / "guests" / ("g" * 70 + ".bin")
    long_file.write_bytes(b"")
    path = write(project, KERNEL + f"[[modules]]\npath = {toml_str(str(long_file))}\n")
    err = config_error(path)
    assert err.where == f"{path}: modules[0].path"
    assert "is 74 bytes long" in err.what
    assert "defaults to the file name; set modules[0].name" in err.what


def test_duplicate_explicit_names(project: Path) -> None:
    text = KERNEL + (
        '[[modules]]\npath = "guests/guest.bin"\nname = "guest"\n'
        '[[modules]]\npath = "guests/initrd.img"\n'
        '[[modules]]\npath = "guests/initrd.img"\nname = "guest"\n'
    )
    path = write(project, text)
    err = config_error(path)
    assert err.where == f"{path}: modules[2].name"
    assert 'duplicate module name "guest" (already used by modules[0].name)' in err.what


def test_duplicate_default_names(project: Path) -> None:
    (project / "other").mkdir()
    (project / "other" / "guest.bin").write_bytes(b"")
    text = (
        KERNEL + '[[modules]]\npath = "guests/guest.bin"\n[[modules]]\npath = "other/guest.bin"\n'
    )
    path = write(project, text)
    err = config_error(path)
    assert err.where == f"{path}: modules[1].path"
    assert 'duplicate module name "guest.bin" (already used by modules[0].path)' in err.what


def test_check_unique_names_across_sources(project: Path) -> None:
    cfg = load_config(write(project, KERNEL + '[[modules]]\npath = "guests/guest.bin"\n'))
    cli = ModuleSpec(project / "x" / "guest.bin", "guest.bin", "")
    with pytest.raises(HvbootError) as info:
        check_unique_names(
            [("hvboot.toml: modules[0].path", cfg.modules[0]), ("--module x/guest.bin", cli)]
        )
    assert info.value.where == "--module x/guest.bin"
    assert "already used by hvboot.toml: modules[0].path" in info.value.what


# ---------------------------------------------------------------------------
# Command lines


@pytest.mark.parametrize("key", ["cmdline", "module"])
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a\\nb", "contains a newline at character 1; expected a single line"),
        ("ab\\r", "contains a newline at character 2"),
        ("a\\u0000b", "contains a NUL character at character 1"),
        ("x" * 65537, "is 65537 bytes long, longer than the limit of 65536 bytes"),
        ("€" * 21846, "is 65538 bytes long"),
    ],
)
def test_bad_cmdline(project: Path, key: str, value: str, fragment: str) -> None:
    if key == "cmdline":
        path = write(project, KERNEL + f'cmdline = "{value}"\n')
        where = "cmdline"
    else:
        text = KERNEL + f'[[modules]]\npath = "guests/guest.bin"\ncmdline = "{value}"\n'
        path = write(project, text)
        where = "modules[0].cmdline"
    err = config_error(path)
    assert err.where == f"{path}: {where}"
    assert fragment in err.what


# ---------------------------------------------------------------------------
# Sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("512K", 512 * 1024),
        ("64M", 64 << 20),
        ("1G", 1 << 30),
        ("2T", 2 << 40),
        ("64m", 64 << 20),
        ("64MiB", 64 << 20),
        ("8kib", 8 << 10),
        (" 1 G ", 1 << 30),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text, "x") == size


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid size"),
        ("M", 'invalid size "M"'),
        ("1.5G", 'invalid size "1.5G"'),
        ("-1", "invalid size"),
        ("64MB", 'invalid size "64MB"'),
        ("64 X", "invalid size"),
        ("0", "greater than 0 bytes, got 0"),
        (0, "greater than 0 bytes, got 0"),
        (-512, "greater than 0 bytes, got -512"),
        (True, "got boolean true"),
        (1.5, "got float 1.5"),
    ],
)
def test_parse_size_errors(text: object, fragment: str) -> None:
    with pytest.raises(HvbootError) as info:
        parse_size(text, "--size")  # type: ignore[arg-type]
    assert info.value.where == "--size"
    assert fragment in info.value.what
    if "invalid size" in fragment:
        assert "K, M or G suffix" in info.value.what


def test_parse_size_multiple_of() -> None:
    assert parse_size("1K", "x", multiple_of=512) == 1024
    with pytest.raises(HvbootError, match=r"not a multiple of 512 bytes; use e\.g\. 512 or 1024"):
        parse_size(1000, "x", multiple_of=512)
    with pytest.raises(HvbootError, match=r"use e\.g\. 512$"):
        parse_size(100, "x", multiple_of=512)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"64X"', 'invalid size "64X"'),
        ("0", "greater than 0"),
        ("1000", "not a multiple of 512 bytes"),
        ("1.5", "got float 1.5"),
        ("[1]", "got array"),
    ],
)
def test_image_size_errors(project: Path, value: str, fragment: str) -> None:
    path = write(project, KERNEL + f"image_size = {value}\n")
    err = config_error(path)
    assert err.where == f"{path}: image_size"
    assert fragment in err.what


# ---------------------------------------------------------------------------
# --module PATH[:CMDLINE]


def test_module_arg(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    guest = project / "guests" / "guest.bin"
    assert module_arg("guests/guest.bin") == ModuleSpec(guest, "guest.bin", "")
    assert module_arg("guests/guest.bin:") == ModuleSpec(guest, "guest.bin", "")
    assert module_arg("guests/guest.bin:console=ttyS0 a=b:c") == ModuleSpec(
        guest, "guest.bin", "console=ttyS0 a=b:c"
    )
    assert module_arg(f"{guest}:x").path == guest


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (":console=ttyS0", "the module path is empty; expected PATH[:CMDLINE]"),
        ("guests/none.bin", "file not found: "),
        ("guests", "is a directory, expected a file"),
        ("guests/guest.bin:a\nb", "contains a newline"),
        ("guests/guest.bin:a\0b", "contains a NUL character"),
        ("guests/guest.bin:" + "x" * 65537, "is 65537 bytes long"),
    ],
)
def test_module_arg_errors(
    project: Path, monkeypatch: pytest.MonkeyPatch, spec: str, fragment: str
) -> None:
    monkeypatch.chdir(project)
    with pytest.raises(HvbootError) as info:
        module_arg(spec, source="-m")
    assert info.value.where is not None and info.value.where.startswith("-m ")
    assert len(info.value.where) < 70  # a 4 KiB command line is clipped
    assert fragment in info.value.what


def test_module_arg_not_found_names_resolved_path(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project / "guests")
    with pytest.raises(HvbootError) as info:
        module_arg("nope.bin:quiet")
    assert info.value.where == "--module nope.bin:quiet"
    assert info.value.what == f"file not found: {project / 'guests' / 'nope.bin'}"


def test_module_arg_bad_file_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "bell\x07.bin").write_bytes(b"")
    (project / ("y" * 65)).write_bytes(b"")
    with pytest.raises(HvbootError, match="non-printable character U\\+0007"):
        module_arg("bell\x07.bin")
    with pytest.raises(HvbootError, match="is 65 bytes long"):
        module_arg("y" * 65)


# ---------------------------------------------------------------------------
# Round trip: random valid configs written as TOML load back as written

_CMDLINE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\x00"), max_size=60)
_NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24).filter(
    lambda s: s.isprintable() and "/" not in s and "\\" not in s and len(s.encode()) <= 64
)
_SIZE = st.one_of(
    st.none(),
    st.integers(1, 1 << 40).map(lambda n: n * 512),
    st.tuples(st.integers(1, 4096), st.sampled_from(["K", "M", "G", "k", "MiB"])),
)
_MODULE = st.tuples(st.integers(0, 4), st.one_of(st.none(), _NAME), st.one_of(st.none(), _CMDLINE))


@settings(max_examples=150, deadline=None)
@given(
    absolute_kernel=st.booleans(),
    cmdline=st.one_of(st.none(), _CMDLINE),
    output=st.one_of(st.none(), st.sampled_from(["disk.img", "out/hv.img", "../x.img"])),
    size=_SIZE,
    modules=st.lists(_MODULE, max_size=5, unique_by=lambda m: m[0]),
)
def test_round_trip(
    absolute_kernel: bool,
    cmdline: str | None,
    output: str | None,
    size: int | tuple[int, str] | None,
    modules: list[tuple[int, str | None, str | None]],
) -> None:
    names = [name if name is not None else f"mod{i}.bin" for i, name, _ in modules]
    assume(len(set(names)) == len(names))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "k").mkdir()
        kernel = root / "k" / "kernel.elf"
        kernel.write_bytes(b"")
        (root / "mods").mkdir()
        for i in range(5):
            (root / "mods" / f"mod{i}.bin").write_bytes(b"")

        lines = [f"kernel = {toml_str(str(kernel) if absolute_kernel else 'k/kernel.elf')}"]
        if cmdline is not None:
            lines.append(f"cmdline = {toml_str(cmdline)}")
        if output is not None:
            lines.append(f"output = {toml_str(output)}")
        expected_size: int | None = None
        if isinstance(size, int):
            lines.append(f"image_size = {size}")
            expected_size = size
        elif size is not None:
            number, unit = size
            lines.append(f'image_size = "{number}{unit}"')
            expected_size = number << {"K": 10, "k": 10, "M": 20, "MiB": 20, "G": 30}[unit]
        for i, name, mod_cmdline in modules:
            lines.append("[[modules]]")
            lines.append(f'path = "mods/mod{i}.bin"')
            if name is not None:
                lines.append(f"name = {toml_str(name)}")
            if mod_cmdline is not None:
                lines.append(f"cmdline = {toml_str(mod_cmdline)}")
        path = root / "hvboot.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        cfg = load_config(path)
        assert cfg == BuildConfig(
            kernel=kernel,
            cmdline=cmdline or "",
            modules=tuple(
                ModuleSpec(root / "mods" / f"mod{i}.bin", names[n], mod_cmdline or "")
                for n, (i, _, mod_cmdline) in enumerate(modules)
            ),
            output=None if output is None else root / output,
            image_size=expected_size,
        )
