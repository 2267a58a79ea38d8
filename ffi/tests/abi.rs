//! The C ABI driven from Rust, so `cargo test` (and Miri) cover the boundary too. The
//! full C suite is ffi/tests/c/test_*.c (one file per area), run by scripts/test-c.sh.

use core::ffi::{c_int, CStr};
use core::mem::size_of;
use core::ptr;

use pasid::*;
use pasid_core::ErrorCode;

const OK: c_int = FfiCode::Ok as c_int;

fn layout() -> pasid_layout {
    pasid_layout {
        size: size_of::<pasid_layout>() as u32,
        width: 20,
        local_start: 1,
        local_end: 4096,
        shared_start: 4096,
        shared_end: 1 << 19,
    }
}

/// A p2 host of [`layout`] with one p2 guest of shared quota 8.
fn p2_host_and_guest() -> (*mut pasid_host, pasid_guest_id) {
    let mut h = ptr::null_mut();
    let cfg = pasid_guest_config {
        size: size_of::<pasid_guest_config>() as u32,
        platform: pasid_platform::P2 as u32,
        shared_quota: 8,
    };
    let mut g = 0;
    // SAFETY: valid pointers to locals, as the header asks.
    unsafe {
        assert_eq!(pasid_host_new(&layout(), 2, &mut h), OK);
        assert_eq!(pasid_guest_create(h, &cfg, &mut g), OK);
    }
    (h, g)
}

fn last_message() -> String {
    let mut buf = [0 as core::ffi::c_char; 256];
    let mut n = 0usize;
    let rc = unsafe { pasid_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert!(rc == OK || rc == ErrorCode::BufferTooSmall as c_int);
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn p2_guest_alloc_bind_migrate() {
    unsafe {
        let l = layout();
        let mut src = ptr::null_mut();
        let mut dst = ptr::null_mut();
        assert_eq!(pasid_host_new(&l, pasid_platform::P2 as u32, &mut src), OK);
        assert_eq!(pasid_host_new(&l, pasid_platform::P2 as u32, &mut dst), OK);
        let cfg = pasid_guest_config {
            size: size_of::<pasid_guest_config>() as u32,
            platform: pasid_platform::P2 as u32,
            shared_quota: 4,
        };
        let mut g = 0;
        assert_eq!(pasid_guest_create(src, &cfg, &mut g), OK);
        let wq = pasid_rid {
            segment: 0,
            bdf: 0x0a00,
        };
        assert_eq!(
            pasid_attach(src, g, wq, pasid_device_kind::SharedWq as u32),
            OK
        );
        let (mut gp, mut hp, mut prog) = (0u32, 0u32, 0u32);
        let mut pages = core::mem::MaybeUninit::<pasid_pages_touched>::uninit();
        assert_eq!(
            pasid_alloc(
                src,
                g,
                pasid_kind::Shared as u32,
                &mut gp,
                pages.as_mut_ptr()
            ),
            OK
        );
        assert!(pages.assume_init().directory_changed);
        assert_eq!(pasid_translate(src, g, gp, &mut hp), OK);
        assert_eq!(pasid_bind(src, g, gp, wq, &mut prog), OK);
        assert_eq!(prog, hp);

        // Export with a size query, import elsewhere.
        let mut n = 0usize;
        assert_eq!(
            pasid_export_guest(src, g, ptr::null_mut(), 0, &mut n),
            ErrorCode::BufferTooSmall as c_int
        );
        let mut blob = vec![0u8; n];
        assert_eq!(pasid_export_guest(src, g, blob.as_mut_ptr(), n, &mut n), OK);
        // A kind that is no PASID_DEVICE_KIND_* value: refused before anything else.
        let mut map = [pasid_rid_mapping {
            size: size_of::<pasid_rid_mapping>() as u32,
            source: wq,
            destination: wq,
            kind: 9,
        }];
        assert_eq!(
            pasid_check_import(dst, blob.as_ptr(), n, map.as_ptr(), 1),
            FfiCode::InvalidArgument as c_int
        );
        // The destination said to be a VF: the guest's shared WQ is refused there.
        map[0].kind = pasid_device_kind::Dedicated as u32;
        assert_eq!(
            pasid_check_import(dst, blob.as_ptr(), n, map.as_ptr(), 1),
            ErrorCode::DeviceKindMismatch as c_int
        );
        map[0].kind = PASID_DEVICE_KIND_SAME_AS_SOURCE;
        assert_eq!(
            pasid_check_import(dst, blob.as_ptr(), n, map.as_ptr(), 1),
            OK
        );
        map[0].kind = pasid_device_kind::SharedWq as u32;
        let (mut g2, mut report) = (0u32, ptr::null_mut());
        assert_eq!(
            pasid_import_guest(dst, blob.as_ptr(), n, map.as_ptr(), 1, &mut g2, &mut report),
            OK
        );
        let mut remap = [pasid_shared_remap {
            gpasid: 0,
            has_source_hpasid: false,
            source_hpasid: 0,
            destination_hpasid: 0,
        }; 2];
        assert_eq!(
            pasid_import_report_shared(report, remap.as_mut_ptr(), 2, &mut n),
            OK
        );
        assert_eq!((n, remap[0].gpasid), (1, gp));
        let mut hp2 = 0;
        assert_eq!(pasid_translate(dst, g2, gp, &mut hp2), OK);
        assert_eq!(remap[0].destination_hpasid, hp2);
        pasid_import_report_free(report);

        // A VCMD ALLOC on the destination, in the VT-d 3.3 layout.
        let mut rsp = 0u64;
        assert_eq!(
            pasid_vcmd(
                dst,
                g2,
                pasid_vtd_revision::V33 as u32,
                1,
                &mut rsp,
                ptr::null_mut()
            ),
            OK
        );
        assert_eq!(((rsp >> 1) & 0x7f, (rsp >> 16) & 0xfffff), (0, 2));

        pasid_host_free(src);
        pasid_host_free(dst);
    }
}

#[test]
fn errors_are_codes_with_messages() {
    unsafe {
        let mut l = layout();
        let mut h = ptr::null_mut();
        l.local_end = 5000;
        assert_eq!(
            pasid_host_new(&l, pasid_platform::P2 as u32, &mut h),
            ErrorCode::RangesOverlap as c_int
        );
        assert_eq!(last_message(), "the local and shared ranges overlap");
        assert_eq!(pasid_last_error_code(), ErrorCode::RangesOverlap as c_int);
        assert_eq!(
            pasid_host_new(ptr::null(), 2, &mut h),
            FfiCode::NullParameter as c_int
        );
        assert_eq!(last_message(), "layout is NULL");
        assert_eq!(
            pasid_host_new(&layout(), 0, &mut h),
            FfiCode::InvalidArgument as c_int
        );
        assert!(h.is_null());

        assert_eq!(pasid_host_new(&layout(), 2, &mut h), OK);
        let mut info: pasid_host_info = core::mem::zeroed();
        info.size = size_of::<pasid_host_info>() as u32;
        assert_eq!(pasid_host_get_info(h, &mut info), OK);
        assert_eq!(info.shared_free, (1 << 19) - 4096);
        pasid_host_free(h);
        pasid_host_free(h);
        assert_eq!(
            pasid_host_get_info(h, &mut info),
            FfiCode::InvalidHandle as c_int
        );
        // A report handle is not a host handle and the other way round.
        assert_eq!(
            pasid_import_report_get_info(h as *const pasid_import_report, ptr::null_mut()),
            FfiCode::NullParameter as c_int
        );
        let mut ri: pasid_import_info = core::mem::zeroed();
        ri.size = size_of::<pasid_import_info>() as u32;
        assert_eq!(
            pasid_import_report_get_info(h as *const pasid_import_report, &mut ri),
            FfiCode::InvalidHandle as c_int
        );
        let text = CStr::from_ptr(pasid_strerror(FfiCode::InvalidHandle as c_int));
        assert_eq!(
            text.to_str().unwrap(),
            "not a live handle of the expected type"
        );
    }
}

#[test]
fn translation_pages_export_and_walk() {
    unsafe {
        let (h, g) = p2_host_and_guest();
        let mut gp = 0;
        for _ in 0..3 {
            assert_eq!(
                pasid_alloc(h, g, pasid_kind::Shared as u32, &mut gp, ptr::null_mut()),
                OK
            );
        }
        let mut mem = vec![vec![0xAAu8; PASID_PAGE_SIZE]; 3];
        let phys = [0x1000u64, 0x2000, 0x3000];
        let page = |m: &mut Vec<u8>, p: u64| pasid_page {
            phys: p,
            bytes: m.as_mut_ptr(),
            len: m.len(),
        };
        let (a, rest) = mem.split_at_mut(1);
        let (b, c) = rest.split_at_mut(1);
        let table = [pasid_table_page {
            table: 0,
            page: page(&mut c[0], phys[2]),
        }];
        assert_eq!(
            pasid_export_translation(
                h,
                g,
                page(&mut a[0], phys[0]),
                page(&mut b[0], phys[1]),
                table.as_ptr(),
                1
            ),
            OK
        );
        let refs: Vec<pasid_page_ref> = mem
            .iter()
            .zip(phys)
            .map(|(m, p)| pasid_page_ref {
                phys: p,
                bytes: m.as_ptr(),
                len: m.len(),
            })
            .collect();
        let mut hp = 0;
        assert_eq!(pasid_translate(h, g, gp, &mut hp), OK);
        let mut r = core::mem::MaybeUninit::<pasid_walk_result>::uninit();
        assert_eq!(
            pasid_walk(
                phys[0],
                phys[1],
                gp,
                refs.as_ptr(),
                refs.len(),
                r.as_mut_ptr()
            ),
            OK
        );
        let r = r.assume_init();
        assert_eq!((r.fault, r.hpasid), (pasid_fault::None as u32, hp));
        pasid_host_free(h);
    }
}

/// A page of possibly uninitialised memory, page aligned, as C may hand one over.
#[repr(C, align(4096))]
struct RawPage([core::mem::MaybeUninit<u8>; PASID_PAGE_SIZE]);

impl RawPage {
    fn uninit() -> Box<Self> {
        Box::new(RawPage([core::mem::MaybeUninit::uninit(); PASID_PAGE_SIZE]))
    }
    fn filled(byte: u8) -> Box<Self> {
        Box::new(RawPage(
            [core::mem::MaybeUninit::new(byte); PASID_PAGE_SIZE],
        ))
    }
    fn page(&mut self, phys: u64) -> pasid_page {
        pasid_page {
            phys,
            bytes: self.0.as_mut_ptr().cast(),
            len: PASID_PAGE_SIZE,
        }
    }
    /// The bytes, once the library wrote every one of them.
    fn written(&self) -> Vec<u8> {
        // SAFETY: the caller checks only pages the library wrote whole.
        self.0.iter().map(|b| unsafe { b.assume_init() }).collect()
    }
}

#[test]
fn pages_handed_in_uninitialised_are_only_written_and_a_refusal_leaves_them() {
    unsafe {
        let (h, g) = p2_host_and_guest();
        let mut gp = 0;
        let mut touched = core::mem::MaybeUninit::<pasid_pages_touched>::uninit();
        assert_eq!(
            pasid_alloc(
                h,
                g,
                pasid_kind::Shared as u32,
                &mut gp,
                touched.as_mut_ptr()
            ),
            OK
        );
        let touched = touched.assume_init();
        assert!(touched.changed && touched.directory_changed);
        let mut hp = 0;
        assert_eq!(pasid_translate(h, g, gp, &mut hp), OK);

        // Export into uninitialised pages: every byte written, the walk finds hPASID.
        let (mut low, mut high, mut table) =
            (RawPage::uninit(), RawPage::uninit(), RawPage::uninit());
        let tables = [pasid_table_page {
            table: 0,
            page: table.page(0x3000),
        }];
        assert_eq!(
            pasid_export_translation(
                h,
                g,
                low.page(0x1000),
                high.page(0x2000),
                tables.as_ptr(),
                1
            ),
            OK
        );
        let bytes = [low.written(), high.written(), table.written()];
        let refs: Vec<pasid_page_ref> = bytes
            .iter()
            .zip([0x1000u64, 0x2000, 0x3000])
            .map(|(m, p)| pasid_page_ref {
                phys: p,
                bytes: m.as_ptr(),
                len: m.len(),
            })
            .collect();
        let mut r = core::mem::MaybeUninit::<pasid_walk_result>::uninit();
        assert_eq!(
            pasid_walk(0x1000, 0x2000, gp, refs.as_ptr(), 3, r.as_mut_ptr()),
            OK
        );
        assert_eq!(r.assume_init().hpasid, hp);

        // One table into an uninitialised page, and the same after an update: the
        // bytes of the export's table page.
        let mut one = RawPage::uninit();
        assert_eq!(
            pasid_write_translation_table(h, g, 0, one.page(0).bytes, PASID_PAGE_SIZE),
            OK
        );
        assert_eq!(one.written(), bytes[2]);
        let mut again = RawPage::uninit();
        let mut dir = RawPage::filled(0);
        assert_eq!(
            pasid_write_touched_pages(
                h,
                g,
                &touched,
                again.page(0x5000),
                dir.page(0).bytes,
                PASID_PAGE_SIZE
            ),
            OK
        );
        assert_eq!(again.written(), bytes[2]);
        let entry = u64::from_le_bytes(dir.written()[..8].try_into().unwrap());
        assert_eq!(entry, 0x5000 | 1, "the directory links the table page");

        // Refused calls write nothing, and refuse in the core's order (the guest, the
        // table number, the pages): a duplicate page address, a bad guest, a bad table
        // number, a page of the wrong size or address, a directory of the wrong size.
        let (mut a, mut b, mut c) = (
            RawPage::filled(0xAA),
            RawPage::filled(0xAA),
            RawPage::filled(0xAA),
        );
        let tables = [pasid_table_page {
            table: 0,
            page: c.page(0x1000),
        }];
        assert_eq!(
            pasid_export_translation(h, g, a.page(0x1000), b.page(0x2000), tables.as_ptr(), 1),
            ErrorCode::DuplicatePage as c_int
        );
        let short = pasid_page {
            len: PASID_PAGE_SIZE - 1,
            ..b.page(0x2000)
        };
        assert_eq!(
            pasid_export_translation(h, g + 1, a.page(0x1001), short, ptr::null(), 0),
            ErrorCode::NoSuchGuest as c_int
        );
        assert_eq!(
            pasid_export_translation(h, g, a.page(0x1000), short, ptr::null(), 0),
            ErrorCode::PageSize as c_int
        );
        assert_eq!(
            pasid_write_translation_table(h, g + 1, PASID_TABLE_COUNT, a.page(0).bytes, 1),
            ErrorCode::NoSuchGuest as c_int
        );
        assert_eq!(
            pasid_write_translation_table(h, g, PASID_TABLE_COUNT, a.page(0).bytes, 1),
            ErrorCode::BadTablePage as c_int
        );
        assert_eq!(
            pasid_write_translation_table(h, g, 0, a.page(0).bytes, PASID_PAGE_SIZE - 1),
            ErrorCode::PageSize as c_int
        );
        let bad_table = pasid_pages_touched {
            table: PASID_TABLE_COUNT,
            ..touched
        };
        let short_dir = c.page(0).bytes;
        assert_eq!(
            pasid_write_touched_pages(h, g + 1, &bad_table, short, short_dir, 8),
            ErrorCode::NoSuchGuest as c_int
        );
        assert_eq!(
            pasid_write_touched_pages(h, g, &bad_table, short, short_dir, 8),
            ErrorCode::BadTablePage as c_int
        );
        assert_eq!(
            pasid_write_touched_pages(h, g, &touched, short, short_dir, 8),
            ErrorCode::PageSize as c_int
        );
        assert_eq!(
            pasid_write_touched_pages(
                h,
                g,
                &touched,
                a.page(0x1001),
                b.page(0).bytes,
                PASID_PAGE_SIZE
            ),
            ErrorCode::UnalignedPage as c_int
        );
        assert_eq!(
            pasid_write_touched_pages(h, g, &touched, a.page(0x1000), short_dir, 8),
            ErrorCode::PageSize as c_int
        );
        for p in [&a, &b, &c] {
            assert!(p.written().iter().all(|&x| x == 0xAA));
        }
        pasid_host_free(h);
    }
}
