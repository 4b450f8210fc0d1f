//! The loader's files over the network, when the firmware started it by PXE boot.
//!
//! Then the loaded image's device is the network interface: it has no file system, but the PXE
//! Base Code protocol (UEFI 2.10 §24.3), already started and configured by the firmware's own
//! DHCP exchange. The loader asks it for each file over TFTP (RFC 1350; the size first through
//! the `tsize` option, RFC 2349) from the server the boot file came from: the DHCP answer's
//! `siaddr` (RFC 2131 §2, "next server"), or the proxy offer's when a proxy DHCP server answered
//! (PXE 2.1 §2.2.5). Paths are the config's without the leading '/', relative to the TFTP root
//! (`hvboot build --netboot DIR` lays the tree out like the ESP; docs/netboot.md).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};
use core::ptr::NonNull;

use hvboot_api::MemoryKind;

use uefi::boot::{self, ScopedProtocol};
use uefi::proto::network::pxe::{BaseCode, DhcpV4Packet};
use uefi::{CStr8, Status};
use uefi_raw::protocol::network::pxe::{PxeBaseCodeProtocol, PxeBaseCodeTftpOpcode};
use uefi_raw::Boolean;

use crate::memory;

/// The TFTP block size asked for: an Ethernet frame's worth (1500 - IP 20 - UDP 8 - TFTP 4,
/// RFC 2348); the server may answer with less.
const BLOCK_SIZE: usize = 1468;

/// The PXE Base Code protocol of the interface the loader was booted from, and its server.
pub struct Tftp {
    pxe: ScopedProtocol<BaseCode>,
    server: Ipv4Addr,
}

impl Tftp {
    /// PXE Base Code on the loaded image's device, or why not.
    pub fn open() -> Result<Self, String> {
        let pxe = crate::files::open_on_boot_device::<BaseCode>("PXE Base Code")?;
        let mode = pxe.mode();
        if !mode.started() || !mode.dhcp_ack_received() {
            return Err("PXE Base Code is not started or has no DHCP answer".into());
        }
        if mode.using_ipv6() {
            return Err("PXE over IPv6 is not supported (IPv4 only)".into());
        }
        let ack: &DhcpV4Packet = mode.dhcp_ack().as_ref();
        let mut server = ack.bootp_si_addr;
        if mode.proxy_offer_received() {
            let proxy: &DhcpV4Packet = mode.proxy_offer().as_ref();
            if proxy.bootp_si_addr != [0; 4] {
                server = proxy.bootp_si_addr;
            }
        }
        if server == [0; 4] {
            return Err("the DHCP answer names no TFTP server (siaddr 0.0.0.0)".into());
        }
        Ok(Self {
            pxe,
            server: Ipv4Addr::from(server),
        })
    }

    /// `tftp://server/`: how the files are named in messages.
    pub fn describe(&self) -> String {
        format!("tftp://{}/", self.server)
    }

    /// A file into fresh pages of the given kind; (physical address, size in bytes). Progress
    /// goes to the log: the size the server announces, then the end of the transfer.
    pub fn read_to_pages(
        &mut self,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), String> {
        let remote = path.trim_start_matches('/');
        let url = format!("tftp://{}/{remote}", self.server);
        let mut name: Vec<u8> = remote.bytes().collect();
        name.push(0);
        let name = CStr8::from_bytes_with_nul(&name)
            .map_err(|_| format!("{url}: the path holds a NUL byte"))?;
        let server = IpAddr::V4(self.server);
        let size = match self.pxe.tftp_get_file_size(&server, name) {
            Ok(size) => size,
            Err(e) if e.status() == Status::UNSUPPORTED => {
                return self.read_unsized(&url, name, path, kind, limit);
            }
            Err(e) => return Err(format!("{url}: {}", self.why(e.status()))),
        };
        crate::files::too_large(path, size, limit)?;
        log::info!("net: {url}: {size} bytes");
        let phys = memory::allocate(kind, size.max(1), None)
            .map_err(|e| format!("{path}: no memory for {size} bytes: {e}"))?;
        // SAFETY: the pages were just allocated for us and are identity-mapped by the firmware.
        let dest = unsafe { core::slice::from_raw_parts_mut(phys as *mut u8, size as usize) };
        let got = self.read_into(&url, name, dest)?;
        if got != size {
            return Err(format!(
                "{url}: the server sent {got} bytes of the {size} it announced"
            ));
        }
        log::info!("net: {url}: read");
        Ok((phys, size))
    }

    /// One TFTP read into `dest`, asking for BLOCK_SIZE-byte blocks (RFC 2348); the byte count
    /// the protocol reports. The uefi crate's `tftp_read_file` passes no block size, and 512-byte
    /// lock-step TFTP is the slowest part of a network boot, so this calls the protocol's Mtftp
    /// itself (UEFI 2.10 §24.3, EFI_PXE_BASE_CODE_PROTOCOL.Mtftp()).
    fn read_into(&mut self, url: &str, name: &CStr8, dest: &mut [u8]) -> Result<u64, String> {
        self.mtftp_read(name, dest)
            .map_err(|status| format!("{url}: {}", self.why(status)))
    }

    /// Mtftp(TFTP_READ_FILE) into `dest`: the byte count, or the failing status.
    fn mtftp_read(&mut self, name: &CStr8, dest: &mut [u8]) -> Result<u64, Status> {
        let raw = (&mut *self.pxe as *mut BaseCode).cast::<PxeBaseCodeProtocol>();
        let mut size = dest.len() as u64;
        let block = BLOCK_SIZE;
        let server = uefi_raw::IpAddress::new_v4(self.server.octets());
        // SAFETY: BaseCode is a repr(transparent) wrapper of the raw protocol; every pointer
        // lives across the call; `dest` is `size` bytes.
        let status = unsafe {
            ((*raw).mtftp)(
                raw,
                PxeBaseCodeTftpOpcode::TFTP_READ_FILE,
                dest.as_mut_ptr().cast(),
                Boolean::FALSE,
                &mut size,
                &block,
                &server,
                name.as_ptr().cast(),
                core::ptr::null(),
                Boolean::FALSE,
            )
        };
        if status.is_success() {
            Ok(size)
        } else {
            Err(status)
        }
    }

    /// For a PXE Base Code that only reads (iPXE's: no GET_FILE_SIZE, and READ_FILE reports
    /// neither the length it wrote nor the one it needs, only BUFFER_TOO_SMALL): the file is
    /// read into a buffer that grows by 4x until it fits, then once more into a second buffer
    /// of that size filled with the complement; past the file's end the two differ in every
    /// byte, within it they are equal, so the last equal byte ends the file exactly.
    fn read_unsized(
        &mut self,
        url: &str,
        name: &CStr8,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), String> {
        log::info!("net: {url}: size unknown (the PXE Base Code cannot ask), reading it twice");
        let mut cap: u64 = 1 << 20;
        let zeros = loop {
            let buf = Scratch::new(path, cap, 0x00)?;
            match self.mtftp_read(name, buf.bytes()) {
                Ok(_) => break buf,
                Err(Status::BUFFER_TOO_SMALL) if cap <= limit => cap *= 4,
                Err(Status::BUFFER_TOO_SMALL) => {
                    return Err(format!("{path}: more than the {limit} bytes allowed"));
                }
                Err(status) => return Err(format!("{url}: {}", self.why(status))),
            }
        };
        let ones = Scratch::new(path, cap, 0xFF)?;
        self.read_into(url, name, ones.bytes())?;
        let (a, b) = (zeros.bytes(), ones.bytes());
        let size = (0..a.len())
            .rev()
            .find(|&i| a[i] == b[i])
            .map_or(0, |i| i + 1) as u64;
        crate::files::too_large(path, size, limit)?;
        let phys = memory::allocate(kind, size.max(1), None)
            .map_err(|e| format!("{path}: no memory for {size} bytes: {e}"))?;
        // SAFETY: the pages were just allocated for us and are identity-mapped by the firmware.
        let dest = unsafe { core::slice::from_raw_parts_mut(phys as *mut u8, size as usize) };
        dest.copy_from_slice(&a[..size as usize]);
        log::info!("net: {url}: {size} bytes read");
        Ok((phys, size))
    }

    /// A failed TFTP call in words: the server's own error when it sent one (RFC 1350 §5).
    fn why(&self, status: Status) -> String {
        let mode = self.pxe.mode();
        if status == Status::TFTP_ERROR && mode.tftp_error_received() {
            let e = mode.tftp_error();
            let text: String = e
                .error_string
                .iter()
                .copied()
                .take_while(|&b| b != 0)
                .map(char::from)
                .collect();
            return format!("the server answered TFTP error {}: {text}", e.error_code);
        }
        if status == Status::NOT_FOUND {
            return "no such file on the server".into();
        }
        format!("TFTP transfer failed: {status:?}")
    }
}

/// Loader pages for one whole-file read, filled with a byte, given back when dropped.
struct Scratch {
    phys: u64,
    bytes: u64,
}

impl Scratch {
    fn new(path: &str, bytes: u64, fill: u8) -> Result<Self, String> {
        let phys = memory::allocate(MemoryKind::LOADER_RECLAIMABLE.0, bytes, None)
            .map_err(|e| format!("{path}: no memory for a {bytes}-byte TFTP buffer: {e}"))?;
        let s = Self { phys, bytes };
        s.bytes().fill(fill);
        Ok(s)
    }

    #[allow(clippy::mut_from_ref)]
    fn bytes(&self) -> &mut [u8] {
        // SAFETY: the pages are ours until drop, identity-mapped; each caller's borrow ends
        // before the next call that uses them.
        unsafe { core::slice::from_raw_parts_mut(self.phys as *mut u8, self.bytes as usize) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(ptr) = NonNull::new(self.phys as *mut u8) {
            // SAFETY: allocated by memory::allocate as pages(bytes) pages, not used after this.
            let _ = unsafe { boot::free_pages(ptr, memory::pages(self.bytes)) };
        }
    }
}
