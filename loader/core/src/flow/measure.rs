//! Measured boot (docs/trust.md, "Measured boot"): through the platform's TPM, hvboot.cfg and
//! the kernel command line extend PCR [`TPM_PCR_CONFIG`], the kernel and each module PCR
//! [`TPM_PCR_FILES`], each with an EV_IPL event in the firmware's log. The config and the
//! command line are measured as bytes; a file is measured by its BLAKE3 digest, the one pass
//! that also checks its pin, of the buffer the loader then uses: the firmware's SHA-256 over a
//! 64 MiB module would cost about 15 s under QEMU's TCG (4.2 MiB/s, docs/trust.md), the digest
//! of a digest costs nothing, and a verifier recomputes either from the image's files
//! (`hvboot predict-pcrs`).

use alloc::string::String;

use hvboot_api::{TPM_PCR_CONFIG, TPM_PCR_FILES};

use super::{Error, Platform, CONFIG_PATH};
use crate::config::{LoaderConfig, TpmPolicy};
use crate::digest::{self, Digest};

/// The event data of the command line's measurement precedes the command line with this.
pub const CMDLINE_EVENT: &str = "cmdline: ";

/// Whether this boot measures (a TPM was there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measuring(pub bool);

/// Applies the config's TPM policy and, with a TPM, measures the config (`bytes`, as read) and
/// the kernel command line.
pub fn start<P: Platform>(
    p: &mut P,
    config: &LoaderConfig,
    bytes: &[u8],
) -> Result<Measuring, Error> {
    if let Err(why) = p.tpm() {
        if config.tpm == TpmPolicy::Required {
            return Err(Error::NoTpm(why));
        }
        log::info!("tpm: nothing measured ({why})");
        return Ok(Measuring(false));
    }
    extend(
        p,
        TPM_PCR_CONFIG,
        bytes,
        CONFIG_PATH.as_bytes(),
        CONFIG_PATH,
    )?;
    let mut event = String::from(CMDLINE_EVENT);
    event.push_str(&config.cmdline);
    let line = config.cmdline.as_bytes();
    extend(p, TPM_PCR_CONFIG, line, event.as_bytes(), "cmdline")?;
    log::info!("tpm: measured {CONFIG_PATH} and the command line into PCR {TPM_PCR_CONFIG}");
    Ok(Measuring(true))
}

impl Measuring {
    /// Checks the file at `path` (`bytes`, as read) against its pin and, when measuring,
    /// extends [`TPM_PCR_FILES`] with its BLAKE3 digest: one hash pass for both.
    pub fn file<P: Platform>(
        self,
        p: &mut P,
        path: &str,
        bytes: &[u8],
        pin: Option<Digest>,
    ) -> Result<(), Error> {
        if !self.0 {
            return Error::check_digest(path, bytes, pin);
        }
        let got = Digest::of(bytes);
        if let Some(expected) = pin.filter(|e| *e != got) {
            let why = digest::Mismatch { expected, got };
            return Err(Error::Digest {
                path: path.into(),
                why,
            });
        }
        extend(p, TPM_PCR_FILES, &got.0, path.as_bytes(), path)
    }
}

fn extend<P: Platform>(
    p: &mut P,
    pcr: u32,
    data: &[u8],
    event: &[u8],
    what: &str,
) -> Result<(), Error> {
    p.measure(pcr, data, event).map_err(|why| Error::Measure {
        what: what.into(),
        why,
    })
}
