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

use libfuzzer_sys::fuzz_target;
use pasid::*;
use pasid_fuzz::ffi::*;

/// Makes one call and checks what the library did.
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
            Call::PendingChanges(h, g, out_null) => {
                let mut on = false;
                let rc = pasid_pending_translation_changes(
                    s.host(*h),
                    s.guest(*g),
                    null_or(*out_null, &mut on),
                    &mut n,
                );
                if *out_null {
                    assert_ne!(rc, OK);
                }
                ("pasid_pending_translation_changes", rc)
            }
            Call::TranslationEntries(h, g, b) => {
                let mut buf = OutBuf::new::<pasid_translation_change>(*b);
                let rc =
                    pasid_translation_entries(s.host(*h), s.guest(*g), buf.ptr(), buf.len, &mut n);
                check_buf("pasid_translation_entries", rc, &buf, n);
                ("pasid_translation_entries", rc)
            }
            Call::ApplyChange(change, previous, table, dir, table_phys) => {
                let c = change.map(|(p, hpasid, valid)| pasid_translation_change {
                    gpasid: pasid(p),
                    hpasid,
                    valid: valid & 1 == 1,
                });
                let cptr = c.as_ref().map_or(core::ptr::null(), |c| c as *const _);
                // Bare page pointers: the header promises 4096 bytes, so the harness
                // keeps that promise (a shorter buffer would be the caller's bug).
                let mut t = PageMem::whole(*table);
                let mut d = dir.map(PageMem::whole);
                let (t0, d0) = (t.bytes.clone(), d.as_ref().map(|d| d.bytes.clone()));
                let dptr = d
                    .as_mut()
                    .map_or(core::ptr::null_mut(), |d| d.bytes.as_mut_ptr());
                let rc = pasid_apply_translation_change(
                    cptr,
                    *previous,
                    t.bytes.as_mut_ptr(),
                    dptr,
                    *table_phys,
                );
                if rc == OK {
                    // At most one table entry and one directory entry changed.
                    let diff = |a: &[u8], b: &[u8], w: usize| {
                        a.chunks(w).zip(b.chunks(w)).filter(|(x, y)| x != y).count()
                    };
                    assert!(
                        diff(&t0, &t.bytes, 4) <= 1,
                        "more than one table entry changed"
                    );
                    if let (Some(d0), Some(d)) = (d0, &d) {
                        assert!(diff(&d0, &d.bytes, 8) <= 1, "more than one directory entry");
                    }
                } else {
                    assert_eq!(t.bytes, t0, "a refused change wrote the table page");
                    assert_eq!(
                        d.map(|d| d.bytes),
                        d0,
                        "a refused change wrote the directory"
                    );
                }
                ("pasid_apply_translation_change", rc)
            }
            Call::HostSetId(h, id) => ("pasid_host_set_id", pasid_host_set_id(s.host(*h), *id)),
            Call::EcapPss(w) => {
                assert_eq!(pasid_ecap_pss(*w), w.saturating_sub(1));
                ("pasid_ecap_pss", OK)
            }
            Call::P1ExactWidth(l, out_null) => {
                let l = l.map(layout);
                let p = l.as_ref().map_or(core::ptr::null(), |l| l as *const _);
                let mut w = 0u8;
                let rc = pasid_p1_exact_width(p, null_or(*out_null, &mut w));
                if rc == OK {
                    let l = l.unwrap();
                    assert!(l.local_start == 1 && (1u64 << w) <= u64::from(l.local_end));
                }
                ("pasid_p1_exact_width", rc)
            }
            Call::GuestCreateAdvertising(h, config, contract, out_null) => {
                let c = config.map(|(platform, quota)| pasid_guest_config {
                    size: size_of::<pasid_guest_config>() as u32,
                    platform: platform % 4,
                    shared_quota: quota % 64,
                });
                let k = contract.map(|(width, start, end, caps)| pasid_guest_contract {
                    size: size_of::<pasid_guest_contract>() as u32,
                    width: width % 24,
                    local_start: start % 64,
                    local_end: end % 1200,
                    capabilities: caps % 8,
                });
                let cptr = c.as_ref().map_or(core::ptr::null(), |c| c as *const _);
                let kptr = k.as_ref().map_or(core::ptr::null(), |k| k as *const _);
                let rc = pasid_guest_create_advertising(
                    s.host(*h),
                    cptr,
                    kptr,
                    null_or(*out_null, &mut out32),
                );
                if rc == OK {
                    s.guests.push(out32);
                    // The guest keeps what it was told.
                    let mut got = core::mem::zeroed::<pasid_guest_contract>();
                    got.size = size_of::<pasid_guest_contract>() as u32;
                    assert_eq!(pasid_guest_contract_get(s.host(*h), out32, &mut got), OK);
                    let k = k.unwrap();
                    assert_eq!(
                        (got.width, got.local_start, got.local_end, got.capabilities),
                        (k.width, k.local_start, k.local_end, k.capabilities)
                    );
                }
                ("pasid_guest_create_advertising", rc)
            }
            Call::GuestContractGet(h, g, out_null) => {
                let mut got = core::mem::zeroed::<pasid_guest_contract>();
                got.size = size_of::<pasid_guest_contract>() as u32;
                let rc =
                    pasid_guest_contract_get(s.host(*h), s.guest(*g), null_or(*out_null, &mut got));
                ("pasid_guest_contract_get", rc)
            }
            Call::ReportIdentity(i, out_null) => {
                let mut id = pasid_migration_identity {
                    size: size_of::<pasid_migration_identity>() as u32,
                    ..Default::default()
                };
                let (mut present, mut quota) = (false, 0u32);
                let rc = pasid_import_report_identity(
                    s.report(*i),
                    null_or(*out_null, &mut id),
                    &mut present,
                    &mut quota,
                );
                ("pasid_import_report_identity", rc)
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
