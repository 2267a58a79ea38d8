//! The arguments of the `ffi_calls` target: a typed call of the C ABI per variant of
//! [`Call`], the state the calls build up ([`State`]), output buffers with canaries
//! ([`OutBuf`]), caller pages ([`PageMem`]), and the checks every call gets.

use core::ffi::{c_int, CStr};
use core::mem::size_of;

use arbitrary::Arbitrary;
use pasid::*;
use pasid_core::ErrorCode;

/// `PASID_RESULT_OK`.
pub const OK: c_int = FfiCode::Ok as c_int;
/// `PASID_RESULT_BUFFER_TOO_SMALL`.
pub const BUFFER_TOO_SMALL: c_int = ErrorCode::BufferTooSmall as c_int;
/// `PASID_RESULT_INVALID_HANDLE`.
pub const INVALID_HANDLE: c_int = FfiCode::InvalidHandle as c_int;
/// `PASID_RESULT_PANIC`: never acceptable (a panic caught at the boundary is a bug).
pub const PANIC: c_int = FfiCode::Panic as c_int;
/// What an output buffer's bytes are set to first, and its tail must still hold.
pub const CANARY: u8 = 0xa5;
/// Canary bytes after an output buffer.
pub const SLACK: usize = 64;

/// A handle argument: one of the live ones (by index), NULL, or a made-up value.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Handle {
    Live(u8),
    Null,
    Forged(usize),
}

/// A guest id: one a call returned (by index), or any number.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Guest {
    Known(u8),
    Raw(u32),
}

/// How an output array is passed.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Buf {
    /// NULL with length 0: a size query.
    Query,
    /// NULL with a length: must be refused.
    NullWithLen(u8),
    /// A real buffer of this many elements.
    Len(u8),
    /// A real buffer, one byte off its type's alignment.
    Misaligned(u8),
}

/// A RID, folded onto a few segments and functions so calls meet each other's devices.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Rid(pub u16, pub u16);

/// A PASID argument: mostly small (so it is often one a guest holds), or any u32.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Pasid {
    Small(u8),
    Raw(u32),
}

/// A migration blob argument.
#[derive(Arbitrary, Debug, Clone)]
pub enum Blob {
    Exported(u8),
    /// An exported blob with one byte changed.
    Flipped(u8, u16, u8),
    Raw(Vec<u8>),
    Null,
    NullWithLen(u8),
}

/// A layout's fields (width, local start and end, shared start and end), folded so
/// that valid layouts are common.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Layout(pub u8, pub u32, pub u32, pub u32, pub u32);

/// A caller page: its physical address, length and the byte it is filled with.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Page {
    /// Physical address as the CPU would see it (any value, aligned or not).
    pub phys: u64,
    /// 0 means 4096 (the right size), else this many bytes.
    pub len: u16,
    /// The byte the page holds before the call.
    pub fill: u8,
}

/// One call of the C ABI with its arguments: a variant per exported function (or per
/// way of calling one), named after it.
#[derive(Arbitrary, Debug, Clone)]
pub enum Call {
    LayoutCheck(Option<Layout>),
    HostNew(Option<Layout>, u32, bool),
    HostFree(Handle),
    HostInfo(Handle, bool),
    GuestCreate(Handle, Option<(u32, u32)>, bool),
    GuestDestroy(Handle, Guest),
    GuestInfo(Handle, Guest, bool),
    HostGuests(Handle, Buf),
    Attach(Handle, Guest, Rid, u32),
    Detach(Handle, Guest, Rid),
    Owner(Handle, Rid, bool),
    Alloc(Handle, Guest, u32, bool),
    Free(Handle, Guest, Pasid, bool),
    Translate(Handle, Guest, Pasid),
    KindOf(Handle, Guest, Pasid),
    Bind(Handle, Guest, Pasid, Rid),
    Unbind(Handle, Guest, Pasid, Rid),
    Record(Handle, Guest, Rid, Pasid),
    Release(Handle, Guest, Rid, Pasid),
    GuestPasids(Handle, Guest, Buf),
    GuestDevices(Handle, Guest, Buf),
    DeviceProgrammed(Handle, Guest, Rid, Buf),
    TranslationTables(Handle, Guest, Buf),
    ExportTranslation(Handle, Guest, Page, Page, Vec<(u32, Page)>),
    WriteTranslationTable(Handle, Guest, u32, Page),
    WriteTouchedPages(Handle, Guest, Option<(bool, bool, u32)>, Page, Page),
    DirectoryOfTable(u32, bool),
    WriteDirectoryEntry(Page, u32, u64),
    Walk(u64, u64, Pasid, Vec<Page>),
    VcmdOffsets(u32),
    RegisterAt(u32, u32),
    VcmdEncode(u32, u8, u64),
    VcmdDecode(u32, u64),
    Vcap(Handle, Guest, u32),
    Vcmd(Handle, Guest, u32, u64, bool),
    ExportGuest(Handle, Guest, Buf),
    InspectBlob(Blob),
    InspectBlobPasids(Blob, Buf),
    CheckImport(Handle, Blob, Vec<(Rid, Rid, u32)>),
    ImportGuest(Handle, Blob, Vec<(Rid, Rid, u32)>, bool),
    ReportFree(u8),
    ReportInfo(u8),
    ReportShared(u8, Buf),
    ReportDevices(u8, Buf),
    Strerror(c_int),
    LastErrorMessage(Buf),
    BindUse(Handle, Guest, Pasid, Rid, u32, bool),
    UnbindUse(Handle, Guest, Pasid, Rid, u32),
    DetachUse(Handle, Guest, Rid, u32),
    RidUsers(Handle, Rid, Buf),
    ProgrammedEntries(Handle, Guest, Buf),
    DrainingList(Handle, Buf),
    /// Confirms the teardown of draining items picked from the host's list (by index;
    /// out of range means made up from the fields), or of a NULL array.
    CompleteTeardown(Handle, Vec<(u8, Guest, Pasid, u32)>, bool),
    EnableChanges(Handle, Guest, u16),
    DisableChanges(Handle, Guest),
    DrainChanges(Handle, Guest, Buf),
    /// Export with a format version and epoch (None: NULL options).
    ExportGuestWith(Handle, Guest, Option<(u16, u16, u64)>, Buf),
    /// Import with a quota rule (None: NULL options).
    ImportGuestWith(Handle, Blob, Vec<(Rid, Rid, u32)>, Option<(u32, u32, u8)>),
    PendingChanges(Handle, Guest, bool),
    TranslationEntries(Handle, Guest, Buf),
    /// One change (None: NULL) applied to a table page and, when given, a directory
    /// page being linked at a table address.
    ApplyChange(Option<(Pasid, u32, u8)>, u32, Page, Option<Page>, u64),
    HostSetId(Handle, u64),
    EcapPss(u8),
    P1ExactWidth(Option<Layout>, bool),
    /// A guest told a contract (width, start, end, capabilities; None: NULL).
    GuestCreateAdvertising(
        Handle,
        Option<(u32, u32)>,
        Option<(u8, u32, u32, u32)>,
        bool,
    ),
    GuestContractGet(Handle, Guest, bool),
    ReportIdentity(u8, bool),
}

/// What the calls so far made: live hosts, guest ids, exported blobs, reports.
#[derive(Default)]
pub struct State {
    /// Hosts made (freed ones stay, as stale handles).
    pub hosts: Vec<*mut pasid_host>,
    /// Guest ids returned.
    pub guests: Vec<u32>,
    /// Blobs exported.
    pub blobs: Vec<Vec<u8>>,
    /// Import reports made (freed ones stay, as stale handles).
    pub reports: Vec<*mut pasid_import_report>,
}

/// The `i`-th element (modulo the length), if there is one.
pub fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[usize::from(i) % v.len()])
}

impl State {
    /// The host handle an argument names.
    pub fn host(&self, h: Handle) -> *mut pasid_host {
        match h {
            Handle::Live(i) => pick(&self.hosts, i).unwrap_or(core::ptr::null_mut()),
            Handle::Null => core::ptr::null_mut(),
            Handle::Forged(x) => x as *mut pasid_host,
        }
    }

    /// The guest id an argument names.
    pub fn guest(&self, g: Guest) -> u32 {
        match g {
            Guest::Known(i) => pick(&self.guests, i).unwrap_or(0),
            Guest::Raw(x) => x,
        }
    }

    /// The report handle at index `i` (NULL when there is none).
    pub fn report(&self, i: u8) -> *mut pasid_import_report {
        pick(&self.reports, i).unwrap_or(core::ptr::null_mut())
    }

    /// A blob argument's bytes, whether it is passed as NULL, and the length passed with
    /// a NULL one.
    pub fn blob(&self, b: &Blob) -> (Vec<u8>, bool, usize) {
        match b {
            Blob::Exported(i) => (pick_vec(&self.blobs, *i).unwrap_or_default(), false, 0),
            Blob::Flipped(i, at, x) => {
                let mut v = pick_vec(&self.blobs, *i).unwrap_or_default();
                if !v.is_empty() {
                    let n = v.len();
                    v[usize::from(*at) % n] ^= x | 1;
                }
                (v, false, 0)
            }
            Blob::Raw(v) => (v.clone(), false, 0),
            Blob::Null => (Vec::new(), true, 0),
            Blob::NullWithLen(n) => (Vec::new(), true, usize::from(*n) + 1),
        }
    }
}

/// [`pick`] for blobs.
pub fn pick_vec(v: &[Vec<u8>], i: u8) -> Option<Vec<u8>> {
    (!v.is_empty()).then(|| v[usize::from(i) % v.len()].clone())
}

/// The C RID of an argument.
pub fn rid(r: Rid) -> pasid_rid {
    pasid_rid {
        segment: r.0 % 2,
        bdf: r.1 % 16,
    }
}

/// The PASID of an argument.
pub fn pasid(p: Pasid) -> u32 {
    match p {
        Pasid::Small(x) => u32::from(x),
        Pasid::Raw(x) => x,
    }
}

/// The C layout of an argument.
pub fn layout(l: Layout) -> pasid_layout {
    pasid_layout {
        size: size_of::<pasid_layout>() as u32,
        width: l.0,
        local_start: l.1 % 64,
        local_end: l.2 % 1200,
        shared_start: l.3,
        shared_end: l.4,
    }
}

/// Backing memory for an output array of `T`, with canary bytes after it.
pub struct OutBuf {
    mem: Vec<u64>,
    offset: usize,
    /// The length passed, in elements.
    pub len: usize,
    bytes: usize,
    /// Whether the pointer passed is NULL.
    pub null: bool,
}

impl OutBuf {
    /// The buffer an argument describes, for elements of `T`.
    pub fn new<T>(b: Buf) -> Self {
        let (null, len, offset) = match b {
            Buf::Query => (true, 0, 0),
            Buf::NullWithLen(n) => (true, usize::from(n) + 1, 0),
            Buf::Len(n) => (false, usize::from(n), 0),
            Buf::Misaligned(n) => (false, usize::from(n) + 1, 1),
        };
        let bytes = len * size_of::<T>();
        let mut mem = vec![0u64; (offset + bytes + SLACK).div_ceil(8)];
        // SAFETY: plain bytes of a Vec<u64> we own.
        unsafe {
            core::ptr::write_bytes(mem.as_mut_ptr() as *mut u8, CANARY, mem.len() * 8);
        }
        OutBuf {
            mem,
            offset,
            len,
            bytes,
            null,
        }
    }

    /// The pointer to pass.
    pub fn ptr<T>(&mut self) -> *mut T {
        if self.null {
            core::ptr::null_mut()
        } else {
            // SAFETY: within the allocation (offset is 0 or 1).
            unsafe { (self.mem.as_mut_ptr() as *mut u8).add(self.offset) as *mut T }
        }
    }

    /// Nothing written past the buffer's end.
    pub fn check(&self, what: &str) {
        // SAFETY: plain bytes of a Vec<u64> we own.
        let all = unsafe {
            core::slice::from_raw_parts(self.mem.as_ptr() as *const u8, self.mem.len() * 8)
        };
        let tail = &all[self.offset + self.bytes..];
        assert!(
            tail.iter().all(|&b| b == CANARY),
            "{what} wrote past its {} elements",
            self.len
        );
        if self.offset == 1 {
            assert_eq!(all[0], CANARY, "{what} wrote before a misaligned buffer");
        }
    }
}

/// Checks a buffer-rule result: the code, `out_n` against the length, the canaries.
pub fn check_buf(what: &str, rc: c_int, buf: &OutBuf, n: usize) {
    buf.check(what);
    if buf.null && buf.len > 0 {
        assert_ne!(rc, OK, "{what} accepted NULL with a length");
    }
    match rc {
        OK => assert!(n <= buf.len, "{what}: OK with out_n {n} > len {}", buf.len),
        BUFFER_TOO_SMALL => assert!(n > buf.len, "{what}: too small with out_n {n}"),
        _ => {}
    }
}

/// A page's bytes and the C description of it.
pub struct PageMem {
    /// The page's bytes.
    pub bytes: Vec<u8>,
    /// Its physical address.
    pub phys: u64,
}

impl PageMem {
    /// The memory of a page argument.
    pub fn new(p: Page) -> Self {
        let len = if p.len == 0 {
            4096
        } else {
            usize::from(p.len % 8193)
        };
        PageMem {
            bytes: vec![p.fill; len],
            phys: p.phys,
        }
    }

    /// The memory of a bare page pointer (a call that takes no length, such as
    /// `pasid_apply_translation_change`): always the 4096 bytes the header requires,
    /// whatever length the input asked for.
    pub fn whole(p: Page) -> Self {
        PageMem {
            bytes: vec![p.fill; 4096],
            phys: p.phys,
        }
    }

    /// The C description of it.
    pub fn page(&mut self) -> pasid_page {
        pasid_page {
            phys: self.phys,
            bytes: self.bytes.as_mut_ptr(),
            len: self.bytes.len(),
        }
    }
}

/// Checks a result: never a panic, always a documented code, and a failure is this
/// thread's last error.
pub fn check_code(what: &str, rc: c_int) {
    assert_ne!(rc, PANIC, "{what} panicked inside the library");
    // SAFETY: pasid_strerror returns a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(pasid_strerror(rc)) };
    assert_ne!(
        text.to_bytes(),
        b"unknown error code",
        "{what} returned undocumented code {rc}"
    );
    if rc != OK {
        assert_eq!(pasid_last_error_code(), rc, "{what}: last error code");
    }
}

/// NULL when `null`, else `p`.
pub fn null_or<T>(null: bool, p: *mut T) -> *mut T {
    if null {
        core::ptr::null_mut()
    } else {
        p
    }
}
