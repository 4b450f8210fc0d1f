//! The loader config file that the host toolkit writes on the ESP.
//!
//! Format (hvboot config version 1), UTF-8 text, lines ended by LF or CRLF:
//!
//! ```text
//! hvboot-config 1
//! kernel /hvboot/kernel.elf
//! cmdline console=ttyS0 foo=bar
//! module /hvboot/modules/guest.bin
//! module-name guest.bin
//! module-cmdline anything to end of line
//! module-blake3 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! - The first non-empty line is the header `hvboot-config 1`.
//! - Every other line is `KEY SPACE VALUE`; the value is the rest of the line
//!   after the first space and may be empty or contain spaces. A line holding
//!   only a key has an empty value.
//! - Lines starting with `#` are comments; blank lines are ignored.
//! - `kernel PATH` exactly once; `cmdline TEXT` at most once.
//! - `module PATH` starts a new module; `module-name NAME` and
//!   `module-cmdline TEXT` apply to the last `module`, at most once each.
//!   A module's name defaults to the last component of its path.
//! - `kernel-blake3 HEX` (at most once) and `module-blake3 HEX` (at most once per module, for
//!   the last `module`) pin a file by its BLAKE3, 64 hexadecimal digits; the loader refuses a
//!   file whose bytes differ (`crate::digest`). `hvboot build` always writes them.
//! - `tpm required` or `tpm if-present` (at most once; absent means `if-present`): what the
//!   loader does when the machine has no TPM to measure into (docs/trust.md, "Measured boot").
//! - Paths are absolute and `/`-separated (the UEFI loader turns them into
//!   `\`-separated file paths on the ESP).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::digest::Digest;

/// The header line's key.
pub const HEADER_KEY: &str = "hvboot-config";
/// The only config version this loader reads.
pub const VERSION: &str = "1";
/// The largest config file the loader reads: room for a thousand modules with 64 KiB command
/// lines each; `hvboot build` refuses a larger one with these words (via `hvboot-check`).
pub const MAX_CONFIG_BYTES: usize = 80 << 20;

/// The parsed config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Absolute path of the kernel ELF on the boot volume.
    pub kernel: String,
    /// The kernel file's pinned digest (`kernel-blake3`), if any.
    pub kernel_digest: Option<Digest>,
    /// Kernel command line (empty if the file has no `cmdline` line).
    pub cmdline: String,
    /// Modules, in file order.
    pub modules: Vec<ModuleConfig>,
    /// What to do without a TPM (`tpm`).
    pub tpm: TpmPolicy,
}

/// The config's `tpm` line: whether a boot without a TPM to measure into goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TpmPolicy {
    /// Measure when the firmware offers a TPM, boot unmeasured (and say so) otherwise.
    #[default]
    IfPresent,
    /// Refuse to boot without a TPM to measure into.
    Required,
}

impl TpmPolicy {
    /// The value as the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::IfPresent => "if-present",
            Self::Required => "required",
        }
    }
}

/// One `module` entry of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    /// Absolute path of the module file on the boot volume.
    pub path: String,
    /// The module's name, passed to the kernel (default: last path component).
    pub name: String,
    /// The module's command line (empty by default).
    pub cmdline: String,
    /// The module file's pinned digest (`module-blake3`), if any.
    pub digest: Option<Digest>,
}

/// A config file error: where (1-based line number) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number; 0 when the error concerns the whole file
    /// (empty file, missing `kernel` line).
    pub line: usize,
    /// What is wrong, for a person to read.
    pub message: String,
}

impl ConfigError {
    fn at(line: usize, message: String) -> Self {
        ConfigError { line, message }
    }
}

impl core::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

const KEYS: &str =
    "kernel, kernel-blake3, cmdline, tpm, module, module-name, module-cmdline, module-blake3";

/// Splits a line into key and value at the first space.
fn split_key_value(line: &str) -> (&str, &str) {
    match line.split_once(' ') {
        Some((key, value)) => (key, value),
        None => (line, ""),
    }
}

/// Checks that `path` is absolute and `/`-separated, with no empty, `.` or
/// `..` components and no `\` (the UEFI path separator). Returns the last
/// component.
fn check_path<'p>(line: usize, key: &str, path: &'p str) -> Result<&'p str, ConfigError> {
    let bad = |why: &str| {
        ConfigError::at(
            line,
            format!("{key}: bad path `{path}`: {why} (paths are absolute and '/'-separated, e.g. /hvboot/kernel.elf)"),
        )
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("not absolute"));
    };
    if rest.is_empty() {
        return Err(bad("names no file"));
    }
    if path.contains('\\') {
        return Err(bad("contains '\\'"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL character"));
    }
    let mut last = "";
    for component in rest.split('/') {
        match component {
            "" => return Err(bad("empty path component")),
            "." | ".." => return Err(bad("`.` or `..` component")),
            c => last = c,
        }
    }
    Ok(last)
}

/// A `*-blake3` value: 64 hexadecimal digits.
fn parse_digest(line: usize, key: &str, value: &str) -> Result<Digest, ConfigError> {
    Digest::from_hex(value).ok_or_else(|| {
        ConfigError::at(
            line,
            format!("{key}: expected 64 hexadecimal digits (a BLAKE3 digest), found `{value}`"),
        )
    })
}

/// Parses the bytes of a loader config file: UTF-8 text (see [`parse`]).
pub fn parse_bytes(bytes: &[u8]) -> Result<LoaderConfig, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::at(
            0,
            format!(
                "{} bytes, more than the loader's limit of {MAX_CONFIG_BYTES} bytes for its \
                 config file",
                bytes.len()
            ),
        ));
    }
    let text = core::str::from_utf8(bytes)
        .map_err(|e| ConfigError::at(0, format!("not UTF-8 text: {e}")))?;
    parse(text)
}

impl ConfigError {
    /// Where, as the loader prints it: `line N`, or `config` for the whole file.
    pub fn field(&self) -> String {
        if self.line == 0 {
            "config".into()
        } else {
            format!("line {}", self.line)
        }
    }
}

/// Parses the text of a loader config file.
pub fn parse(text: &str) -> Result<LoaderConfig, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut seen_header = false;
    let mut kernel: Option<String> = None;
    let mut kernel_digest: Option<Digest> = None;
    let mut cmdline: Option<String> = None;
    let mut tpm: Option<TpmPolicy> = None;
    let mut modules: Vec<ModuleConfig> = Vec::new();
    // Per the last module: whether module-name / module-cmdline were given.
    let mut module_name_set = false;
    let mut module_cmdline_set = false;

    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }

        if !seen_header {
            let (key, value) = split_key_value(line);
            if key != HEADER_KEY {
                return Err(ConfigError::at(
                    line_no,
                    format!("expected the header `{HEADER_KEY} {VERSION}` as the first line, found `{line}`"),
                ));
            }
            if value != VERSION {
                return Err(ConfigError::at(
                    line_no,
                    format!("unsupported config version `{value}` (this loader reads version {VERSION})"),
                ));
            }
            seen_header = true;
            continue;
        }

        if line.starts_with('#') {
            continue;
        }

        let (key, value) = split_key_value(line);
        match key {
            "kernel" => {
                if kernel.is_some() {
                    return Err(ConfigError::at(
                        line_no,
                        "duplicate key `kernel`".to_owned(),
                    ));
                }
                check_path(line_no, key, value)?;
                kernel = Some(value.to_owned());
            }
            "kernel-blake3" => {
                if kernel_digest.is_some() {
                    return Err(ConfigError::at(
                        line_no,
                        "duplicate key `kernel-blake3`".to_owned(),
                    ));
                }
                kernel_digest = Some(parse_digest(line_no, key, value)?);
            }
            "cmdline" => {
                if cmdline.is_some() {
                    return Err(ConfigError::at(
                        line_no,
                        "duplicate key `cmdline`".to_owned(),
                    ));
                }
                cmdline = Some(value.to_owned());
            }
            "tpm" => {
                if tpm.is_some() {
                    return Err(ConfigError::at(line_no, "duplicate key `tpm`".to_owned()));
                }
                tpm = Some(match value {
                    "required" => TpmPolicy::Required,
                    "if-present" => TpmPolicy::IfPresent,
                    _ => {
                        return Err(ConfigError::at(
                            line_no,
                            format!("tpm: `{value}`: expected `required` or `if-present`"),
                        ))
                    }
                });
            }
            "module" => {
                let name = check_path(line_no, key, value)?;
                modules.push(ModuleConfig {
                    path: value.to_owned(),
                    name: name.to_owned(),
                    cmdline: String::new(),
                    digest: None,
                });
                module_name_set = false;
                module_cmdline_set = false;
            }
            "module-blake3" => {
                let Some(module) = modules.last_mut() else {
                    return Err(ConfigError::at(
                        line_no,
                        format!("`{key}` before any `module` line (it applies to the last module)"),
                    ));
                };
                if module.digest.is_some() {
                    return Err(ConfigError::at(
                        line_no,
                        format!("duplicate key `{key}` for module `{}`", module.path),
                    ));
                }
                module.digest = Some(parse_digest(line_no, key, value)?);
            }
            "module-name" | "module-cmdline" => {
                let Some(module) = modules.last_mut() else {
                    return Err(ConfigError::at(
                        line_no,
                        format!("`{key}` before any `module` line (it applies to the last module)"),
                    ));
                };
                let (set, field) = if key == "module-name" {
                    (&mut module_name_set, &mut module.name)
                } else {
                    (&mut module_cmdline_set, &mut module.cmdline)
                };
                if *set {
                    return Err(ConfigError::at(
                        line_no,
                        format!("duplicate key `{key}` for module `{}`", module.path),
                    ));
                }
                if key == "module-name" && value.is_empty() {
                    return Err(ConfigError::at(
                        line_no,
                        "module-name: empty name".to_owned(),
                    ));
                }
                *set = true;
                *field = value.to_owned();
            }
            HEADER_KEY => {
                return Err(ConfigError::at(
                    line_no,
                    format!("duplicate header `{HEADER_KEY}` (it must be the first line only)"),
                ));
            }
            _ => {
                return Err(ConfigError::at(
                    line_no,
                    format!("unknown key `{key}` (expected {KEYS})"),
                ));
            }
        }
    }

    if !seen_header {
        return Err(ConfigError::at(
            0,
            format!("empty file (expected the header `{HEADER_KEY} {VERSION}`)"),
        ));
    }
    let Some(kernel) = kernel else {
        return Err(ConfigError::at(0, "missing key `kernel`".to_owned()));
    };
    Ok(LoaderConfig {
        kernel,
        kernel_digest,
        cmdline: cmdline.unwrap_or_default(),
        modules,
        tpm: tpm.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_config_past_the_limit_is_refused_by_its_size() {
        let mut big = alloc::vec![b'#'; MAX_CONFIG_BYTES + 1];
        big[..20].copy_from_slice(b"hvboot-config 1\n# x\n");
        let e = parse_bytes(&big).unwrap_err();
        assert_eq!(e.line, 0);
        assert_eq!(
            e.message,
            format!(
                "{} bytes, more than the loader's limit of {MAX_CONFIG_BYTES} bytes for its \
                 config file",
                MAX_CONFIG_BYTES + 1
            )
        );
    }

    use super::*;
    use alloc::string::ToString;

    const EXAMPLE: &str = "hvboot-config 1
kernel /hvboot/kernel.elf
cmdline console=ttyS0 foo=bar
module /hvboot/modules/guest.bin
module-name guest.bin
module-cmdline anything to end of line
module-blake3 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
module /hvboot/modules/other
module-name other
";

    fn err(text: &str) -> ConfigError {
        parse(text).expect_err("expected an error")
    }

    #[test]
    fn parses_example() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.kernel, "/hvboot/kernel.elf");
        assert_eq!(c.cmdline, "console=ttyS0 foo=bar");
        assert_eq!(
            c.modules,
            vec![
                ModuleConfig {
                    path: "/hvboot/modules/guest.bin".into(),
                    name: "guest.bin".into(),
                    cmdline: "anything to end of line".into(),
                    digest: Digest::from_hex(
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                    ),
                },
                ModuleConfig {
                    path: "/hvboot/modules/other".into(),
                    name: "other".into(),
                    cmdline: String::new(),
                    digest: None,
                },
            ]
        );
    }

    #[test]
    fn crlf_equals_lf() {
        let crlf = EXAMPLE.replace('\n', "\r\n");
        assert_eq!(parse(&crlf).unwrap(), parse(EXAMPLE).unwrap());
    }

    #[test]
    fn minimal_and_defaults() {
        let c = parse("hvboot-config 1\nkernel /k").unwrap();
        assert_eq!(c.kernel, "/k");
        assert_eq!(c.cmdline, "");
        assert!(c.modules.is_empty());
    }

    #[test]
    fn module_name_defaults_to_last_component() {
        let c = parse("hvboot-config 1\nkernel /k\nmodule /a/b/c.bin\n").unwrap();
        assert_eq!(c.modules[0].name, "c.bin");
        assert_eq!(c.modules[0].cmdline, "");
    }

    #[test]
    fn comments_blank_lines_and_values_with_spaces() {
        let text = "\n\r\n  \nhvboot-config 1\n# a comment\n\nkernel /k\n#kernel /other\ncmdline  two  spaces \nmodule /m\nmodule-name my module\nmodule-cmdline \n";
        let c = parse(text).unwrap();
        assert_eq!(c.kernel, "/k");
        assert_eq!(c.cmdline, " two  spaces ");
        assert_eq!(c.modules[0].name, "my module");
        assert_eq!(c.modules[0].cmdline, "");
    }

    #[test]
    fn empty_cmdline_values() {
        let c = parse("hvboot-config 1\nkernel /k\ncmdline\n").unwrap();
        assert_eq!(c.cmdline, "");
        let c = parse("hvboot-config 1\nkernel /k\ncmdline \n").unwrap();
        assert_eq!(c.cmdline, "");
    }

    #[test]
    fn bom_is_skipped() {
        assert!(parse("\u{feff}hvboot-config 1\nkernel /k\n").is_ok());
    }

    #[test]
    fn unknown_key_message() {
        let e = err("hvboot-config 1\nkernel /k\nfoo bar\n");
        assert_eq!(e.line, 3);
        assert_eq!(
            e.to_string(),
            "line 3: unknown key `foo` (expected kernel, kernel-blake3, cmdline, tpm, module, \
             module-name, module-cmdline, module-blake3)"
        );
    }

    #[test]
    fn header_errors() {
        let e = err("kernel /k\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("header"), "{e}");
        let e = err("\n\nhvboot-config 2\nkernel /k\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("version `2`"), "{e}");
        let e = err("# comment first\nhvboot-config 1\nkernel /k\n");
        assert_eq!(e.line, 1);
        let e = err("hvboot-config 1\nkernel /k\nhvboot-config 1\n");
        assert_eq!(e.line, 3);
        let e = err("");
        assert_eq!(e.line, 0);
        assert!(e.to_string().starts_with("config: empty file"), "{e}");
        let e = err("\r\n \n");
        assert_eq!(e.line, 0);
    }

    #[test]
    fn kernel_exactly_once() {
        let e = err("hvboot-config 1\ncmdline x\n");
        assert_eq!(e.to_string(), "config: missing key `kernel`");
        let e = err("hvboot-config 1\nkernel /a\nkernel /b\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("duplicate key `kernel`"));
    }

    #[test]
    fn cmdline_at_most_once() {
        let e = err("hvboot-config 1\nkernel /a\ncmdline x\ncmdline y\n");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("duplicate key `cmdline`"));
    }

    #[test]
    fn module_keys_need_a_module_and_are_once_per_module() {
        let e = err("hvboot-config 1\nkernel /a\nmodule-name x\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("before any `module`"), "{e}");
        let e = err("hvboot-config 1\nkernel /a\nmodule-cmdline x\n");
        assert_eq!(e.line, 3);
        let e = err("hvboot-config 1\nkernel /a\nmodule /m\nmodule-name x\nmodule-name y\n");
        assert_eq!(e.line, 5);
        let e = err("hvboot-config 1\nkernel /a\nmodule /m\nmodule-cmdline x\nmodule-cmdline y\n");
        assert_eq!(e.line, 5);
        let e = err("hvboot-config 1\nkernel /a\nmodule /m\nmodule-name\n");
        assert_eq!(e.line, 4);
        // A new module resets the once-per-module checks.
        let c = parse(
            "hvboot-config 1\nkernel /a\nmodule /m\nmodule-name x\nmodule /n\nmodule-name y\nmodule-cmdline z\n",
        )
        .unwrap();
        assert_eq!(c.modules[0].name, "x");
        assert_eq!(c.modules[1].name, "y");
        assert_eq!(c.modules[1].cmdline, "z");
        assert_eq!(c.modules[0].cmdline, "");
    }

    #[test]
    fn digests_pin_the_kernel_and_the_last_module() {
        let k = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let c = parse(&format!(
            "hvboot-config 1\nkernel-blake3 {k}\nkernel /k\nmodule /m\nmodule /n\nmodule-blake3 {}\n",
            k.to_uppercase()
        ))
        .unwrap();
        assert_eq!(c.kernel_digest, Digest::from_hex(k));
        assert_eq!(c.modules[0].digest, None);
        assert_eq!(c.modules[1].digest, Digest::from_hex(k));
        let e = err(&format!(
            "hvboot-config 1\nkernel /k\nkernel-blake3 {k}\nkernel-blake3 {k}\n"
        ));
        assert_eq!(
            (e.line, e.message.as_str()),
            (4, "duplicate key `kernel-blake3`")
        );
        let e = err(&format!("hvboot-config 1\nkernel /k\nmodule-blake3 {k}\n"));
        assert_eq!(e.line, 3);
        assert!(e.message.contains("before any `module`"), "{e}");
        let e = err(&format!(
            "hvboot-config 1\nkernel /k\nmodule /m\nmodule-blake3 {k}\nmodule-blake3 {k}\n"
        ));
        assert_eq!(e.line, 5);
        let e = err("hvboot-config 1\nkernel /k\nkernel-blake3 abc\n");
        assert_eq!(
            e.to_string(),
            "line 3: kernel-blake3: expected 64 hexadecimal digits (a BLAKE3 digest), found `abc`"
        );
    }

    #[test]
    fn bad_paths() {
        for (path, why) in [
            ("", "not absolute"),
            ("k", "not absolute"),
            ("/", "names no file"),
            ("/a//b", "empty path component"),
            ("/a/", "empty path component"),
            ("/a/../b", "`.` or `..`"),
            ("/./b", "`.` or `..`"),
            ("/a\\b", "'\\'"),
        ] {
            let e = err(&format!("hvboot-config 1\nkernel {path}\n"));
            assert_eq!(e.line, 2, "{path}");
            assert!(e.message.contains(why), "{path}: {e}");
            let e = err(&format!("hvboot-config 1\nkernel /k\nmodule {path}\n"));
            assert_eq!(e.line, 3, "{path}");
        }
    }

    #[test]
    fn key_is_case_sensitive_and_needs_no_leading_space() {
        assert_eq!(err("hvboot-config 1\nKernel /k\n").line, 2);
        assert_eq!(err("hvboot-config 1\n kernel /k\n").line, 2);
    }
}

#[cfg(test)]
mod tpm_tests {
    use super::{parse, TpmPolicy};

    #[test]
    fn the_tpm_policy_defaults_to_if_present_and_takes_two_words() {
        let base = "hvboot-config 1\nkernel /k\n";
        assert_eq!(parse(base).unwrap().tpm, TpmPolicy::IfPresent);
        let req = parse(&alloc::format!("{base}tpm required\n")).unwrap();
        assert_eq!(req.tpm, TpmPolicy::Required);
        let ifp = parse(&alloc::format!("{base}tpm if-present\n")).unwrap();
        assert_eq!(ifp.tpm, TpmPolicy::IfPresent);
        let bad = parse(&alloc::format!("{base}tpm always\n")).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "line 3: tpm: `always`: expected `required` or `if-present`"
        );
        let dup = parse(&alloc::format!("{base}tpm required\ntpm required\n")).unwrap_err();
        assert_eq!(dup.to_string(), "line 4: duplicate key `tpm`");
    }
}
