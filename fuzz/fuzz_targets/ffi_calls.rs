//! The C ABI (`pasid-ffi` linked as an rlib) called with arbitrary arguments in
//! arbitrary order: live, freed, NULL and made-up handles; known and made-up guest
//! ids; NULL, short, misaligned and exact buffers; arbitrary blobs, pages and register
//! values.
//!
//! Checked on every call: it returns a documented code and never
//! `PASID_RESULT_PANIC` (a panic caught at the boundary is still a bug); the code has a
//! `pasid_strerror` text; a NULL required pointer is never OK; nothing is written past
//! the length given; a buffer rule's `*out_n` is right for the code returned. At the
//! end every handle is freed, so libFuzzer's leak check sees anything the library
//! kept.
#![no_main]

use core::ffi::{c_char, c_int, CStr};
use core::mem::size_of;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pasid::*;

const OK: c_int = 0;
const BUFFER_TOO_SMALL: c_int = 24;
const INVALID_HANDLE: c_int = 1001;
const PANIC: c_int = 1003;
const CANARY: u8 = 0xa5;
const SLACK: usize = 64;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Handle {
    Live(u8),
    Null,
    Forged(usize),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Guest {
    Known(u8),
    Raw(u32),
}

/// How an output array is passed.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Buf {
    /// NULL with length 0: a size query.
    Query,
    /// NULL with a length: must be refused.
    NullWithLen(u8),
    /// A real buffer of this many elements.
    Len(u8),
    /// A real buffer, one byte off its type's alignment.
    Misaligned(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Rid(u16, u16);

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pasid {
    Small(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone)]
enum Blob {
    Exported(u8),
    /// An exported blob with one byte changed.
    Flipped(u8, u16, u8),
    Raw(Vec<u8>),
    Null,
    NullWithLen(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Layout(u8, u32, u32, u32, u32);

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Page {
    phys: u64,
    /// 0 means 4096 (the right size), else this many bytes.
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug, Clone)]
enum Call {
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
}

#[derive(Default)]
struct State {
    hosts: Vec<*mut pasid_host>,
    guests: Vec<u32>,
    blobs: Vec<Vec<u8>>,
    reports: Vec<*mut pasid_import_report>,
}

fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[usize::from(i) % v.len()])
}

impl State {
    fn host(&self, h: Handle) -> *mut pasid_host {
        match h {
            Handle::Live(i) => pick(&self.hosts, i).unwrap_or(core::ptr::null_mut()),
            Handle::Null => core::ptr::null_mut(),
            Handle::Forged(x) => x as *mut pasid_host,
        }
    }

    fn guest(&self, g: Guest) -> u32 {
        match g {
            Guest::Known(i) => pick(&self.guests, i).unwrap_or(0),
            Guest::Raw(x) => x,
        }
    }

    fn report(&self, i: u8) -> *mut pasid_import_report {
        pick(&self.reports, i).unwrap_or(core::ptr::null_mut())
    }

    fn blob(&self, b: &Blob) -> (Vec<u8>, bool, usize) {
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

fn pick_vec(v: &[Vec<u8>], i: u8) -> Option<Vec<u8>> {
    (!v.is_empty()).then(|| v[usize::from(i) % v.len()].clone())
}

fn rid(r: Rid) -> pasid_rid {
    pasid_rid {
        segment: r.0 % 2,
        bdf: r.1 % 16,
    }
}

fn pasid(p: Pasid) -> u32 {
    match p {
        Pasid::Small(x) => u32::from(x),
        Pasid::Raw(x) => x,
    }
}

fn layout(l: Layout) -> pasid_layout {
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
struct OutBuf {
    mem: Vec<u64>,
    offset: usize,
    len: usize,
    bytes: usize,
    null: bool,
}

impl OutBuf {
    fn new<T>(b: Buf) -> Self {
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

    fn ptr<T>(&mut self) -> *mut T {
        if self.null {
            core::ptr::null_mut()
        } else {
            // SAFETY: within the allocation (offset is 0 or 1).
            unsafe { (self.mem.as_mut_ptr() as *mut u8).add(self.offset) as *mut T }
        }
    }

    /// Nothing written past the buffer's end.
    fn check(&self, what: &str) {
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
fn check_buf(what: &str, rc: c_int, buf: &OutBuf, n: usize) {
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
struct PageMem {
    bytes: Vec<u8>,
    phys: u64,
}

impl PageMem {
    fn new(p: Page) -> Self {
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

    fn page(&mut self) -> pasid_page {
        pasid_page {
            phys: self.phys,
            bytes: self.bytes.as_mut_ptr(),
            len: self.bytes.len(),
        }
    }
}

fn check_code(what: &str, rc: c_int) {
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

fn null_or<T>(null: bool, p: *mut T) -> *mut T {
    if null {
        core::ptr::null_mut()
    } else {
        p
    }
}

fn run(s: &mut State, call: &Call) {
    let mut n = usize::MAX;
    let mut out32 = 0u32;
    let mut out64 = 0u64;
    let mut pages = pasid_pages_touched {
        changed: false,
        directory_changed: false,
        table: 0,
    };
    // SAFETY (all calls below): every pointer is NULL or valid for what the function
    // documents, which is the library's one safety contract; handles may be anything.
    let (what, rc): (&str, c_int) = unsafe {
        match call {
            Call::LayoutCheck(l) => {
                let l = l.map(layout);
                let p = l.as_ref().map_or(core::ptr::null(), |l| l as *const _);
                ("pasid_layout_check", pasid_layout_check(p))
            }
            Call::HostNew(l, platform, out_null) => {
                let l = l.map(layout);
                let p = l.as_ref().map_or(core::ptr::null(), |l| l as *const _);
                let mut h = core::ptr::null_mut();
                let rc = pasid_host_new(p, *platform % 4, null_or(*out_null, &mut h));
                if rc == OK {
                    assert!(!h.is_null());
                    s.hosts.push(h);
                }
                if *out_null || l.is_none() {
                    assert_ne!(rc, OK);
                }
                ("pasid_host_new", rc)
            }
            Call::HostFree(h) => {
                pasid_host_free(s.host(*h));
                ("pasid_host_free", OK)
            }
            Call::HostInfo(h, out_null) => {
                let mut info = core::mem::zeroed::<pasid_host_info>();
                info.size = size_of::<pasid_host_info>() as u32;
                let rc = pasid_host_get_info(s.host(*h), null_or(*out_null, &mut info));
                ("pasid_host_get_info", rc)
            }
            Call::GuestCreate(h, config, out_null) => {
                let c = config.map(|(platform, quota)| pasid_guest_config {
                    size: size_of::<pasid_guest_config>() as u32,
                    platform: platform % 4,
                    shared_quota: quota % 64,
                });
                let p = c.as_ref().map_or(core::ptr::null(), |c| c as *const _);
                let rc = pasid_guest_create(s.host(*h), p, null_or(*out_null, &mut out32));
                if rc == OK {
                    s.guests.push(out32);
                }
                ("pasid_guest_create", rc)
            }
            Call::GuestDestroy(h, g) => (
                "pasid_guest_destroy",
                pasid_guest_destroy(s.host(*h), s.guest(*g)),
            ),
            Call::GuestInfo(h, g, out_null) => {
                let mut info = core::mem::zeroed::<pasid_guest_info>();
                info.size = size_of::<pasid_guest_info>() as u32;
                let rc =
                    pasid_guest_get_info(s.host(*h), s.guest(*g), null_or(*out_null, &mut info));
                ("pasid_guest_get_info", rc)
            }
            Call::HostGuests(h, b) => {
                let mut buf = OutBuf::new::<pasid_guest_id>(*b);
                let rc = pasid_host_guests(s.host(*h), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_host_guests", rc, &buf, n);
                ("pasid_host_guests", rc)
            }
            Call::Attach(h, g, r, kind) => (
                "pasid_attach",
                pasid_attach(s.host(*h), s.guest(*g), rid(*r), *kind % 4),
            ),
            Call::Detach(h, g, r) => (
                "pasid_detach",
                pasid_detach(s.host(*h), s.guest(*g), rid(*r)),
            ),
            Call::Owner(h, r, out_null) => {
                let mut attached = false;
                let rc = pasid_owner(
                    s.host(*h),
                    rid(*r),
                    null_or(*out_null, &mut attached),
                    &mut out32,
                );
                ("pasid_owner", rc)
            }
            Call::Alloc(h, g, kind, with_pages) => {
                let rc = pasid_alloc(
                    s.host(*h),
                    s.guest(*g),
                    *kind % 4,
                    &mut out32,
                    null_or(!*with_pages, &mut pages),
                );
                ("pasid_alloc", rc)
            }
            Call::Free(h, g, p, with_pages) => (
                "pasid_free",
                pasid_free(
                    s.host(*h),
                    s.guest(*g),
                    pasid(*p),
                    null_or(!*with_pages, &mut pages),
                ),
            ),
            Call::Translate(h, g, p) => (
                "pasid_translate",
                pasid_translate(s.host(*h), s.guest(*g), pasid(*p), &mut out32),
            ),
            Call::KindOf(h, g, p) => (
                "pasid_kind_of",
                pasid_kind_of(s.host(*h), s.guest(*g), pasid(*p), &mut out32),
            ),
            Call::Bind(h, g, p, r) => (
                "pasid_bind",
                pasid_bind(s.host(*h), s.guest(*g), pasid(*p), rid(*r), &mut out32),
            ),
            Call::Unbind(h, g, p, r) => (
                "pasid_unbind",
                pasid_unbind(s.host(*h), s.guest(*g), pasid(*p), rid(*r)),
            ),
            Call::BindUse(h, g, p, r, kind, out_null) => {
                let out = if *out_null {
                    std::ptr::null_mut()
                } else {
                    &mut out32 as *mut u32
                };
                let rc =
                    pasid_bind_use(s.host(*h), s.guest(*g), pasid(*p), rid(*r), *kind % 4, out);
                ("pasid_bind_use", rc)
            }
            Call::UnbindUse(h, g, p, r, kind) => (
                "pasid_unbind_use",
                pasid_unbind_use(
                    s.host(*h),
                    s.guest(*g),
                    pasid(*p),
                    rid(*r),
                    *kind % 4,
                    &mut out32,
                ),
            ),
            Call::DetachUse(h, g, r, kind) => (
                "pasid_detach_use",
                pasid_detach_use(s.host(*h), s.guest(*g), rid(*r), *kind % 4),
            ),
            Call::RidUsers(h, r, b) => {
                let mut buf = OutBuf::new::<pasid_rid_user>(*b);
                let rc = pasid_rid_users(s.host(*h), rid(*r), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_rid_users", rc, &buf, n);
                ("pasid_rid_users", rc)
            }
            Call::ProgrammedEntries(h, g, b) => {
                let mut buf = OutBuf::new::<pasid_programmed_entry>(*b);
                let rc = pasid_guest_programmed_entries(
                    s.host(*h),
                    s.guest(*g),
                    buf.ptr(),
                    buf.len,
                    &mut n,
                );
                check_buf("pasid_guest_programmed_entries", rc, &buf, n);
                ("pasid_guest_programmed_entries", rc)
            }
            Call::DrainingList(h, b) => {
                let mut buf = OutBuf::new::<pasid_draining>(*b);
                let rc = pasid_draining_list(s.host(*h), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_draining_list", rc, &buf, n);
                ("pasid_draining_list", rc)
            }
            Call::CompleteTeardown(h, picks, null) => {
                let host = s.host(*h);
                let mut listed = [pasid_draining {
                    guest: 0,
                    gpasid: 0,
                    hpasid: 0,
                }; 16];
                let mut have = 0usize;
                let _ = pasid_draining_list(host, listed.as_mut_ptr(), listed.len(), &mut have);
                let items: Vec<pasid_draining> = picks
                    .iter()
                    .take(16)
                    .map(|&(i, g, p, hp)| match listed.get(usize::from(i)) {
                        Some(d) if usize::from(i) < have.min(16) => *d,
                        _ => pasid_draining {
                            guest: s.guest(g),
                            gpasid: pasid(p),
                            hpasid: hp,
                        },
                    })
                    .collect();
                let ptr = if *null {
                    std::ptr::null()
                } else {
                    items.as_ptr()
                };
                (
                    "pasid_complete_teardown",
                    pasid_complete_teardown(host, ptr, items.len()),
                )
            }
            Call::EnableChanges(h, g, cap) => (
                "pasid_enable_translation_changes",
                pasid_enable_translation_changes(s.host(*h), s.guest(*g), u32::from(*cap)),
            ),
            Call::DisableChanges(h, g) => (
                "pasid_disable_translation_changes",
                pasid_disable_translation_changes(s.host(*h), s.guest(*g)),
            ),
            Call::DrainChanges(h, g, b) => {
                let mut buf = OutBuf::new::<pasid_translation_change>(*b);
                let rc = pasid_drain_translation_changes(
                    s.host(*h),
                    s.guest(*g),
                    buf.ptr(),
                    buf.len,
                    &mut n,
                );
                check_buf("pasid_drain_translation_changes", rc, &buf, n);
                ("pasid_drain_translation_changes", rc)
            }
            Call::ExportGuestWith(h, g, opts, b) => {
                let o = opts.map(|(major, minor, epoch)| pasid_export_options {
                    size: core::mem::size_of::<pasid_export_options>() as u32,
                    format_major: major % 4,
                    format_minor: minor % 3,
                    epoch,
                });
                let optr = o.as_ref().map_or(core::ptr::null(), |o| o as *const _);
                let mut buf = OutBuf::new::<u8>(*b);
                let rc = pasid_export_guest_with(
                    s.host(*h),
                    s.guest(*g),
                    optr,
                    buf.ptr(),
                    buf.len,
                    &mut n,
                );
                check_buf("pasid_export_guest_with", rc, &buf, n);
                if rc == OK && !buf.null {
                    s.blobs
                        .push(core::slice::from_raw_parts(buf.ptr::<u8>(), n).to_vec());
                }
                ("pasid_export_guest_with", rc)
            }
            Call::ImportGuestWith(h, blob, map, opts) => {
                let (v, null, len) = s.blob(blob);
                let bptr = if null { core::ptr::null() } else { v.as_ptr() };
                let map: Vec<pasid_rid_mapping> = map
                    .iter()
                    .take(8)
                    .map(|&(a, b, kind)| pasid_rid_mapping {
                        size: core::mem::size_of::<pasid_rid_mapping>() as u32,
                        source: rid(a),
                        destination: rid(b),
                        kind: kind % 5,
                    })
                    .collect();
                let o = opts.map(|(rule, quota, log)| pasid_import_options {
                    size: core::mem::size_of::<pasid_import_options>() as u32,
                    quota_rule: rule % 4,
                    quota,
                    change_log_capacity: u32::from(log),
                });
                let optr = o.as_ref().map_or(core::ptr::null(), |o| o as *const _);
                let mut out_guest = 0u32;
                let rc = pasid_import_guest_with(
                    s.host(*h),
                    bptr,
                    len,
                    map.as_ptr(),
                    map.len(),
                    optr,
                    &mut out_guest,
                    core::ptr::null_mut(),
                );
                if rc == OK {
                    s.guests.push(out_guest);
                }
                ("pasid_import_guest_with", rc)
            }
            Call::Record(h, g, r, p) => (
                "pasid_record",
                pasid_record(s.host(*h), s.guest(*g), rid(*r), pasid(*p), &mut out32),
            ),
            Call::Release(h, g, r, p) => (
                "pasid_release",
                pasid_release(s.host(*h), s.guest(*g), rid(*r), pasid(*p)),
            ),
            Call::GuestPasids(h, g, b) => {
                let mut buf = OutBuf::new::<pasid_guest_pasid>(*b);
                let rc = pasid_guest_pasids(s.host(*h), s.guest(*g), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_guest_pasids", rc, &buf, n);
                ("pasid_guest_pasids", rc)
            }
            Call::GuestDevices(h, g, b) => {
                let mut buf = OutBuf::new::<pasid_device_info>(*b);
                let rc = pasid_guest_devices(s.host(*h), s.guest(*g), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_guest_devices", rc, &buf, n);
                ("pasid_guest_devices", rc)
            }
            Call::DeviceProgrammed(h, g, r, b) => {
                let mut buf = OutBuf::new::<pasid_programmed>(*b);
                let rc = pasid_device_programmed(
                    s.host(*h),
                    s.guest(*g),
                    rid(*r),
                    buf.ptr(),
                    buf.len,
                    &mut n,
                );
                check_buf("pasid_device_programmed", rc, &buf, n);
                ("pasid_device_programmed", rc)
            }
            Call::TranslationTables(h, g, b) => {
                let mut buf = OutBuf::new::<u32>(*b);
                let rc =
                    pasid_translation_tables(s.host(*h), s.guest(*g), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_translation_tables", rc, &buf, n);
                ("pasid_translation_tables", rc)
            }
            Call::ExportTranslation(h, g, low, high, tables) => {
                let (mut low, mut high) = (PageMem::new(*low), PageMem::new(*high));
                let mut mems: Vec<(u32, PageMem)> = tables
                    .iter()
                    .take(8)
                    .map(|&(t, p)| (t % 8, PageMem::new(p)))
                    .collect();
                let list: Vec<pasid_table_page> = mems
                    .iter_mut()
                    .map(|(t, m)| pasid_table_page {
                        table: *t,
                        page: m.page(),
                    })
                    .collect();
                let rc = pasid_export_translation(
                    s.host(*h),
                    s.guest(*g),
                    low.page(),
                    high.page(),
                    list.as_ptr(),
                    list.len(),
                );
                ("pasid_export_translation", rc)
            }
            Call::WriteTranslationTable(h, g, table, p) => {
                let mut m = PageMem::new(*p);
                let rc = pasid_write_translation_table(
                    s.host(*h),
                    s.guest(*g),
                    *table % 8,
                    m.bytes.as_mut_ptr(),
                    m.bytes.len(),
                );
                ("pasid_write_translation_table", rc)
            }
            Call::WriteTouchedPages(h, g, touched, table, dir) => {
                let t = touched.map(|(changed, directory_changed, table)| pasid_pages_touched {
                    changed,
                    directory_changed,
                    table: table % 8,
                });
                let tp = t.as_ref().map_or(core::ptr::null(), |t| t as *const _);
                let (mut table, mut dir) = (PageMem::new(*table), PageMem::new(*dir));
                let rc = pasid_write_touched_pages(
                    s.host(*h),
                    s.guest(*g),
                    tp,
                    table.page(),
                    dir.bytes.as_mut_ptr(),
                    dir.bytes.len(),
                );
                ("pasid_write_touched_pages", rc)
            }
            Call::DirectoryOfTable(t, out_null) => {
                let rc = pasid_directory_of_table(*t, null_or(*out_null, &mut out32), &mut n);
                ("pasid_directory_of_table", rc)
            }
            Call::WriteDirectoryEntry(p, table, phys) => {
                let mut m = PageMem::new(*p);
                let rc = pasid_write_directory_entry(
                    m.bytes.as_mut_ptr(),
                    m.bytes.len(),
                    *table,
                    *phys,
                    &mut out32,
                );
                ("pasid_write_directory_entry", rc)
            }
            Call::Walk(low, high, p, pages_in) => {
                let mems: Vec<PageMem> =
                    pages_in.iter().take(6).map(|&p| PageMem::new(p)).collect();
                let refs: Vec<pasid_page_ref> = mems
                    .iter()
                    .map(|m| pasid_page_ref {
                        phys: m.phys,
                        bytes: m.bytes.as_ptr(),
                        len: m.bytes.len(),
                    })
                    .collect();
                let mut result = core::mem::zeroed::<pasid_walk_result>();
                let rc = pasid_walk(
                    *low,
                    *high,
                    pasid(*p),
                    refs.as_ptr(),
                    refs.len(),
                    &mut result,
                );
                ("pasid_walk", rc)
            }
            Call::VcmdOffsets(rev) => {
                let mut o = core::mem::zeroed::<pasid_vcmd_offsets>();
                (
                    "pasid_vcmd_get_offsets",
                    pasid_vcmd_get_offsets(*rev % 4, &mut o),
                )
            }
            Call::RegisterAt(rev, off) => (
                "pasid_vcmd_register_at",
                pasid_vcmd_register_at(*rev % 4, *off, &mut out32),
            ),
            Call::VcmdEncode(rev, code, operand) => (
                "pasid_vcmd_encode",
                pasid_vcmd_encode(*rev % 4, *code, *operand, &mut out64),
            ),
            Call::VcmdDecode(rev, v) => {
                let mut r = core::mem::zeroed::<pasid_vcmd_response>();
                (
                    "pasid_vcmd_decode_response",
                    pasid_vcmd_decode_response(*rev % 4, *v, &mut r),
                )
            }
            Call::Vcap(h, g, rev) => (
                "pasid_vcap",
                pasid_vcap(s.host(*h), s.guest(*g), *rev % 4, &mut out64),
            ),
            Call::Vcmd(h, g, rev, command, with_pages) => (
                "pasid_vcmd",
                pasid_vcmd(
                    s.host(*h),
                    s.guest(*g),
                    *rev % 4,
                    *command,
                    &mut out64,
                    null_or(!*with_pages, &mut pages),
                ),
            ),
            Call::ExportGuest(h, g, b) => {
                let mut buf = OutBuf::new::<u8>(*b);
                let rc = pasid_export_guest(s.host(*h), s.guest(*g), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_export_guest", rc, &buf, n);
                if rc == OK && !buf.null {
                    let bytes = core::slice::from_raw_parts(buf.ptr::<u8>(), n).to_vec();
                    s.blobs.push(bytes);
                } else if rc == BUFFER_TOO_SMALL && n < 1 << 20 {
                    // Ask again with the size it gave: now it fits.
                    let mut v = vec![0u8; n];
                    let mut m = 0;
                    let rc2 =
                        pasid_export_guest(s.host(*h), s.guest(*g), v.as_mut_ptr(), n, &mut m);
                    check_code("pasid_export_guest (retry)", rc2);
                    if rc2 == OK {
                        assert_eq!(m, n);
                        s.blobs.push(v);
                    }
                }
                ("pasid_export_guest", rc)
            }
            Call::InspectBlob(b) => {
                let (v, null, len) = s.blob(b);
                let p = if null { core::ptr::null() } else { v.as_ptr() };
                let mut info = core::mem::zeroed::<pasid_blob_info>();
                info.size = size_of::<pasid_blob_info>() as u32;
                let rc = pasid_inspect_blob(p, if null { len } else { v.len() }, &mut info);
                ("pasid_inspect_blob", rc)
            }
            Call::InspectBlobPasids(b, ob) => {
                let (v, null, len) = s.blob(b);
                let p = if null { core::ptr::null() } else { v.as_ptr() };
                let mut buf = OutBuf::new::<pasid_guest_pasid>(*ob);
                let rc = pasid_inspect_blob_pasids(
                    p,
                    if null { len } else { v.len() },
                    buf.ptr(),
                    buf.len,
                    &mut n,
                );
                check_buf("pasid_inspect_blob_pasids", rc, &buf, n);
                ("pasid_inspect_blob_pasids", rc)
            }
            Call::CheckImport(h, b, map) => {
                let (v, null, len) = s.blob(b);
                let p = if null { core::ptr::null() } else { v.as_ptr() };
                let pairs: Vec<pasid_rid_mapping> = map
                    .iter()
                    .map(|&(a, b, kind)| pasid_rid_mapping {
                        size: size_of::<pasid_rid_mapping>() as u32,
                        source: rid(a),
                        destination: rid(b),
                        kind: kind % 4,
                    })
                    .collect();
                let rc = pasid_check_import(
                    s.host(*h),
                    p,
                    if null { len } else { v.len() },
                    pairs.as_ptr(),
                    pairs.len(),
                );
                ("pasid_check_import", rc)
            }
            Call::ImportGuest(h, b, map, want_report) => {
                let (v, null, len) = s.blob(b);
                let p = if null { core::ptr::null() } else { v.as_ptr() };
                // Identity map for the blob's devices, plus the fuzzer's pairs.
                let mut pairs: Vec<pasid_rid_mapping> = map
                    .iter()
                    .map(|&(a, b, kind)| pasid_rid_mapping {
                        size: size_of::<pasid_rid_mapping>() as u32,
                        source: rid(a),
                        destination: rid(b),
                        kind: kind % 4,
                    })
                    .collect();
                pairs.extend((0..32u16).map(|i| pasid_rid_mapping {
                    size: size_of::<pasid_rid_mapping>() as u32,
                    source: pasid_rid {
                        segment: i / 16,
                        bdf: i % 16,
                    },
                    destination: pasid_rid {
                        segment: i / 16,
                        bdf: i % 16,
                    },
                    kind: 3, // PASID_DEVICE_KIND_SAME_AS_SOURCE
                }));
                let mut report = core::ptr::null_mut();
                let rc = pasid_import_guest(
                    s.host(*h),
                    p,
                    if null { len } else { v.len() },
                    pairs.as_ptr(),
                    pairs.len(),
                    &mut out32,
                    null_or(!*want_report, &mut report),
                );
                if rc == OK {
                    s.guests.push(out32);
                    if *want_report {
                        assert!(!report.is_null());
                        s.reports.push(report);
                    }
                }
                ("pasid_import_guest", rc)
            }
            Call::ReportFree(i) => {
                pasid_import_report_free(s.report(*i));
                ("pasid_import_report_free", OK)
            }
            Call::ReportInfo(i) => {
                let mut info = core::mem::zeroed::<pasid_import_info>();
                info.size = size_of::<pasid_import_info>() as u32;
                (
                    "pasid_import_report_get_info",
                    pasid_import_report_get_info(s.report(*i), &mut info),
                )
            }
            Call::ReportShared(i, b) => {
                let mut buf = OutBuf::new::<pasid_shared_remap>(*b);
                let rc = pasid_import_report_shared(s.report(*i), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_import_report_shared", rc, &buf, n);
                ("pasid_import_report_shared", rc)
            }
            Call::ReportDevices(i, b) => {
                let mut buf = OutBuf::new::<pasid_rid_remap>(*b);
                let rc = pasid_import_report_devices(s.report(*i), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_import_report_devices", rc, &buf, n);
                ("pasid_import_report_devices", rc)
            }
            Call::Strerror(code) => {
                let text = CStr::from_ptr(pasid_strerror(*code));
                assert!(!text.to_bytes().is_empty());
                ("pasid_strerror", OK)
            }
            Call::LastErrorMessage(b) => {
                let mut buf = OutBuf::new::<c_char>(*b);
                let before = pasid_last_error_code();
                let rc = pasid_last_error_message(buf.ptr(), buf.len, &mut n);
                // Its own rule: *out_n excludes the NUL, and it never sets the last error.
                buf.check("pasid_last_error_message");
                match rc {
                    OK => assert!(n < buf.len || (n, buf.len) == (0, 0), "OK, out_n {n}"),
                    BUFFER_TOO_SMALL => assert!(n >= buf.len, "too small, out_n {n}"),
                    _ => assert!(buf.null && buf.len > 0, "pasid_last_error_message: {rc}"),
                }
                assert_eq!(
                    pasid_last_error_code(),
                    before,
                    "the message read changed the code"
                );
                if rc == OK && buf.len > 0 {
                    let text = core::slice::from_raw_parts(buf.ptr::<u8>(), n + 1);
                    assert_eq!(text[n], 0, "not NUL-terminated");
                    assert!(!text[..n].contains(&0), "NUL inside the message");
                }
                return;
            }
        }
    };
    check_code(what, rc);
}

fuzz_target!(|calls: Vec<Call>| {
    let mut s = State::default();
    for call in calls.iter().take(200) {
        run(&mut s, call);
    }
    for &h in &s.hosts {
        pasid_host_free(h);
    }
    for &r in &s.reports {
        pasid_import_report_free(r);
    }
    // Every handle is now stale.
    for &h in &s.hosts {
        let mut info = unsafe { core::mem::zeroed::<pasid_host_info>() };
        info.size = size_of::<pasid_host_info>() as u32;
        // SAFETY: a stale handle is a documented input; `info` is valid.
        let rc = unsafe { pasid_host_get_info(h, &mut info) };
        assert_eq!(rc, INVALID_HANDLE, "a freed host handle still works");
    }
});
