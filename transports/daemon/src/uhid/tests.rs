//! Tests of the UHID lane: layout against <linux/uhid.h>, encoding, decoding, hostile
//! input, and the lane against a fake kernel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use super::*;

impl EventIo for UnixDatagram {
    fn read_event(&self, buffer: &mut [u8]) -> io::Result<usize> {
        self.recv(buffer)
    }

    fn write_event(&self, event: &[u8]) -> io::Result<usize> {
        self.send(event)
    }
}

fn n(value: u32) -> usize {
    usize::try_from(value).unwrap()
}

fn u16_at(event: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(event[at..at + 2].try_into().unwrap())
}

fn u32_at(event: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(event[at..at + 4].try_into().unwrap())
}

/// A kernel-side event of `EVENT_SIZE` bytes with `kind` and some fields set.
fn kernel_event(kind: u32, fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut event = vec![0u8; EVENT_SIZE];
    event[..4].copy_from_slice(&kind.to_ne_bytes());
    for (at, bytes) in fields {
        event[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    event
}

fn output_event(data: &[u8], rtype: u8) -> Vec<u8> {
    let size = u16::try_from(data.len()).unwrap().to_ne_bytes();
    kernel_event(
        event_type::OUTPUT,
        &[
            (offset::OUTPUT_DATA, data),
            (offset::OUTPUT_SIZE, &size),
            (offset::OUTPUT_RTYPE, &[rtype]),
        ],
    )
}

fn sample_report() -> [u8; PACKET_SIZE] {
    std::array::from_fn(|i| u8::try_from(i).unwrap().wrapping_mul(3).wrapping_add(1))
}

#[test]
fn layout_adds_up() {
    // The union: its largest member, uhid_create2_req, rounded up to 8-byte alignment.
    let create2 = NAME_SIZE + PHYS_SIZE + UNIQ_SIZE + 2 + 2 + 4 * 4 + DESCRIPTOR_MAX;
    assert_eq!(create2, 4372);
    assert_eq!(EVENT_SIZE, 4 + create2.next_multiple_of(8));
    assert_eq!(offset::CREATE2_RD_DATA + DESCRIPTOR_MAX, 4 + create2);
    assert_eq!(offset::CREATE2_PHYS, offset::CREATE2_NAME + NAME_SIZE);
    assert_eq!(offset::CREATE2_UNIQ, offset::CREATE2_PHYS + PHYS_SIZE);
    assert_eq!(offset::CREATE2_RD_SIZE, offset::CREATE2_UNIQ + UNIQ_SIZE);
    assert_eq!(offset::OUTPUT_SIZE, offset::OUTPUT_DATA + DATA_MAX);
    assert_eq!(offset::OUTPUT_RTYPE, offset::OUTPUT_SIZE + 2);
    const { assert!(offset::OUTPUT_RTYPE < EVENT_SIZE) };
    assert_eq!(INPUT2_LEN, 70);
    assert_eq!(GET_REPORT_REPLY_LEN, 12);
    assert_eq!(SET_REPORT_REPLY_LEN, 10);
}

/// Compiles a C program against the system's `<linux/uhid.h>` and compares every size,
/// offset and event number with this module's. Skipped — loudly — without a C compiler or
/// the header (Debian: `gcc`, `linux-libc-dev`).
#[test]
fn layout_matches_the_kernel_header() {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    if !Path::new("/usr/include/linux/uhid.h").exists() {
        eprintln!(
            "\n*** SKIPPED layout_matches_the_kernel_header: /usr/include/linux/uhid.h is \
             missing (install linux-libc-dev) — the UHID layout was NOT checked against the \
             kernel header ***\n"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("layout.c");
    let binary = dir.path().join("layout");
    let fields = [
        ("event", "sizeof(struct uhid_event)"),
        ("type", "offsetof(struct uhid_event, type)"),
        ("name", "offsetof(struct uhid_event, u.create2.name)"),
        ("phys", "offsetof(struct uhid_event, u.create2.phys)"),
        ("uniq", "offsetof(struct uhid_event, u.create2.uniq)"),
        ("rd_size", "offsetof(struct uhid_event, u.create2.rd_size)"),
        ("bus", "offsetof(struct uhid_event, u.create2.bus)"),
        ("vendor", "offsetof(struct uhid_event, u.create2.vendor)"),
        ("product", "offsetof(struct uhid_event, u.create2.product)"),
        ("version", "offsetof(struct uhid_event, u.create2.version)"),
        ("country", "offsetof(struct uhid_event, u.create2.country)"),
        ("rd_data", "offsetof(struct uhid_event, u.create2.rd_data)"),
        ("name_size", "sizeof(((struct uhid_create2_req *)0)->name)"),
        ("phys_size", "sizeof(((struct uhid_create2_req *)0)->phys)"),
        ("uniq_size", "sizeof(((struct uhid_create2_req *)0)->uniq)"),
        ("rd_max", "sizeof(((struct uhid_create2_req *)0)->rd_data)"),
        (
            "dev_flags",
            "offsetof(struct uhid_event, u.start.dev_flags)",
        ),
        ("in_size", "offsetof(struct uhid_event, u.input2.size)"),
        ("in_data", "offsetof(struct uhid_event, u.input2.data)"),
        ("out_data", "offsetof(struct uhid_event, u.output.data)"),
        ("out_size", "offsetof(struct uhid_event, u.output.size)"),
        ("out_rtype", "offsetof(struct uhid_event, u.output.rtype)"),
        ("gr_id", "offsetof(struct uhid_event, u.get_report.id)"),
        ("gr_rnum", "offsetof(struct uhid_event, u.get_report.rnum)"),
        (
            "gr_rtype",
            "offsetof(struct uhid_event, u.get_report.rtype)",
        ),
        (
            "grr_id",
            "offsetof(struct uhid_event, u.get_report_reply.id)",
        ),
        (
            "grr_err",
            "offsetof(struct uhid_event, u.get_report_reply.err)",
        ),
        (
            "grr_size",
            "offsetof(struct uhid_event, u.get_report_reply.size)",
        ),
        ("sr_id", "offsetof(struct uhid_event, u.set_report.id)"),
        ("sr_rnum", "offsetof(struct uhid_event, u.set_report.rnum)"),
        (
            "sr_rtype",
            "offsetof(struct uhid_event, u.set_report.rtype)",
        ),
        ("sr_size", "offsetof(struct uhid_event, u.set_report.size)"),
        (
            "srr_id",
            "offsetof(struct uhid_event, u.set_report_reply.id)",
        ),
        (
            "srr_err",
            "offsetof(struct uhid_event, u.set_report_reply.err)",
        ),
        ("data_max", "UHID_DATA_MAX"),
        ("descriptor_max", "HID_MAX_DESCRIPTOR_SIZE"),
        ("bus_usb", "BUS_USB"),
        ("DESTROY", "UHID_DESTROY"),
        ("START", "UHID_START"),
        ("STOP", "UHID_STOP"),
        ("OPEN", "UHID_OPEN"),
        ("CLOSE", "UHID_CLOSE"),
        ("OUTPUT", "UHID_OUTPUT"),
        ("GET_REPORT", "UHID_GET_REPORT"),
        ("GET_REPORT_REPLY", "UHID_GET_REPORT_REPLY"),
        ("CREATE2", "UHID_CREATE2"),
        ("INPUT2", "UHID_INPUT2"),
        ("SET_REPORT", "UHID_SET_REPORT"),
        ("SET_REPORT_REPLY", "UHID_SET_REPORT_REPLY"),
        ("FEATURE_REPORT", "UHID_FEATURE_REPORT"),
        ("OUTPUT_REPORT", "UHID_OUTPUT_REPORT"),
        ("INPUT_REPORT", "UHID_INPUT_REPORT"),
    ];
    let mut program = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/uhid.h>\nint main(void) {\n",
    );
    for (name, expression) in fields {
        program.push_str(&format!(
            "  printf(\"{name}=%lu\\n\", (unsigned long)({expression}));\n"
        ));
    }
    program.push_str("  return 0;\n}\n");
    std::fs::write(&source, program).unwrap();
    let compiled = std::process::Command::new(&compiler)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output();
    let compiled = match compiled {
        Ok(output) => output,
        Err(error) => {
            eprintln!(
                "\n*** SKIPPED layout_matches_the_kernel_header: no C compiler ({compiler}: \
                 {error}) — the UHID layout was NOT checked against the kernel header ***\n"
            );
            return;
        }
    };
    assert!(
        compiled.status.success(),
        "{compiler} failed on the layout program:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = std::process::Command::new(&binary).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let kernel = |name: &str| -> usize {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing from the layout program's output"));
        line.parse().unwrap()
    };
    let ours: &[(&str, usize)] = &[
        ("event", EVENT_SIZE),
        ("type", offset::TYPE),
        ("name", offset::CREATE2_NAME),
        ("phys", offset::CREATE2_PHYS),
        ("uniq", offset::CREATE2_UNIQ),
        ("rd_size", offset::CREATE2_RD_SIZE),
        ("bus", offset::CREATE2_BUS),
        ("vendor", offset::CREATE2_VENDOR),
        ("product", offset::CREATE2_PRODUCT),
        ("version", offset::CREATE2_VERSION),
        ("country", offset::CREATE2_COUNTRY),
        ("rd_data", offset::CREATE2_RD_DATA),
        ("name_size", NAME_SIZE),
        ("phys_size", PHYS_SIZE),
        ("uniq_size", UNIQ_SIZE),
        ("rd_max", DESCRIPTOR_MAX),
        ("dev_flags", offset::START_DEV_FLAGS),
        ("in_size", offset::INPUT2_SIZE),
        ("in_data", offset::INPUT2_DATA),
        ("out_data", offset::OUTPUT_DATA),
        ("out_size", offset::OUTPUT_SIZE),
        ("out_rtype", offset::OUTPUT_RTYPE),
        ("gr_id", offset::GET_REPORT_ID),
        ("gr_rnum", offset::GET_REPORT_RNUM),
        ("gr_rtype", offset::GET_REPORT_RTYPE),
        ("grr_id", offset::GET_REPORT_REPLY_ID),
        ("grr_err", offset::GET_REPORT_REPLY_ERR),
        ("grr_size", offset::GET_REPORT_REPLY_SIZE),
        ("sr_id", offset::SET_REPORT_ID),
        ("sr_rnum", offset::SET_REPORT_RNUM),
        ("sr_rtype", offset::SET_REPORT_RTYPE),
        ("sr_size", offset::SET_REPORT_SIZE),
        ("srr_id", offset::SET_REPORT_REPLY_ID),
        ("srr_err", offset::SET_REPORT_REPLY_ERR),
        ("data_max", DATA_MAX),
        ("descriptor_max", DESCRIPTOR_MAX),
        ("bus_usb", usize::from(BUS_USB)),
        ("DESTROY", n(event_type::DESTROY)),
        ("START", n(event_type::START)),
        ("STOP", n(event_type::STOP)),
        ("OPEN", n(event_type::OPEN)),
        ("CLOSE", n(event_type::CLOSE)),
        ("OUTPUT", n(event_type::OUTPUT)),
        ("GET_REPORT", n(event_type::GET_REPORT)),
        ("GET_REPORT_REPLY", n(event_type::GET_REPORT_REPLY)),
        ("CREATE2", n(event_type::CREATE2)),
        ("INPUT2", n(event_type::INPUT2)),
        ("SET_REPORT", n(event_type::SET_REPORT)),
        ("SET_REPORT_REPLY", n(event_type::SET_REPORT_REPLY)),
        ("FEATURE_REPORT", usize::from(report_type::FEATURE)),
        ("OUTPUT_REPORT", usize::from(report_type::OUTPUT)),
        ("INPUT_REPORT", usize::from(report_type::INPUT)),
    ];
    assert_eq!(ours.len(), fields.len());
    for (name, value) in ours {
        assert_eq!(kernel(name), *value, "{name} differs from <linux/uhid.h>");
    }
}

#[test]
fn create2_places_every_field() {
    let identity = DeviceIdentity::fidelio("fidelio-42");
    let event = encode_create2(&identity).unwrap();
    assert_eq!(event.len(), EVENT_SIZE);
    assert_eq!(u32_at(&event, 0), event_type::CREATE2);
    let name = &event[offset::CREATE2_NAME..offset::CREATE2_PHYS];
    assert!(name.starts_with(b"Fidelio FIDO2 Authenticator\0"));
    assert!(event[offset::CREATE2_PHYS..].starts_with(b"fidelio/uhid\0"));
    assert!(event[offset::CREATE2_UNIQ..].starts_with(b"fidelio-42\0"));
    let descriptor = fidelio_usb::report_descriptor();
    assert_eq!(
        usize::from(u16_at(&event, offset::CREATE2_RD_SIZE)),
        descriptor.len()
    );
    assert_eq!(u16_at(&event, offset::CREATE2_BUS), 0x03);
    assert_eq!(u32_at(&event, offset::CREATE2_VENDOR), 0x1209);
    assert_eq!(u32_at(&event, offset::CREATE2_PRODUCT), 0x0001);
    assert_eq!(u32_at(&event, offset::CREATE2_VERSION), 0x0100);
    assert_eq!(u32_at(&event, offset::CREATE2_COUNTRY), 0);
    let rd = &event[offset::CREATE2_RD_DATA..];
    assert_eq!(&rd[..descriptor.len()], descriptor);
    assert!(rd[descriptor.len()..].iter().all(|&b| b == 0));
    // The FIDO usage page opens the descriptor: what hosts and udev's fido_id look for.
    assert_eq!(&descriptor[..3], &[0x06, 0xD0, 0xF1]);
}

#[test]
fn create2_refuses_what_the_kernel_would_cut_or_refuse() {
    let mut identity = DeviceIdentity::fidelio("x");
    identity.name = "n".repeat(127);
    identity.uniq = "u".repeat(63);
    identity.phys = "p".repeat(63);
    let event = encode_create2(&identity).unwrap();
    // Every string keeps its terminating NUL.
    assert_eq!(event[offset::CREATE2_PHYS - 1], 0);
    assert_eq!(event[offset::CREATE2_UNIQ - 1], 0);
    assert_eq!(event[offset::CREATE2_RD_SIZE - 1], 0);

    identity.name = "n".repeat(128);
    assert_eq!(
        encode_create2(&identity),
        Err(IdentityError::Field {
            field: "name",
            len: 128,
            max: 127
        })
    );
    identity.name = "a\0b".to_owned();
    assert!(matches!(
        encode_create2(&identity),
        Err(IdentityError::Field { field: "name", .. })
    ));
    let mut identity = DeviceIdentity::fidelio(&"u".repeat(64));
    assert!(matches!(
        encode_create2(&identity),
        Err(IdentityError::Field { field: "uniq", .. })
    ));
    identity.uniq = "ok".to_owned();
    identity.report_descriptor = Vec::new();
    assert_eq!(encode_create2(&identity), Err(IdentityError::Descriptor(0)));
    identity.report_descriptor = vec![0; DESCRIPTOR_MAX + 1];
    assert_eq!(
        encode_create2(&identity),
        Err(IdentityError::Descriptor(DESCRIPTOR_MAX + 1))
    );
    identity.report_descriptor = vec![0; DESCRIPTOR_MAX];
    let event = encode_create2(&identity).unwrap();
    assert_eq!(event.len(), EVENT_SIZE);
    assert_eq!(
        usize::from(u16_at(&event, offset::CREATE2_RD_SIZE)),
        DESCRIPTOR_MAX
    );
}

#[test]
fn small_events_encode_only_what_they_use() {
    let report = sample_report();
    let input = encode_input2(&report);
    assert_eq!(u32_at(&input, 0), event_type::INPUT2);
    assert_eq!(u16_at(&input, offset::INPUT2_SIZE), 64);
    assert_eq!(&input[offset::INPUT2_DATA..], &report);

    let reply = encode_get_report_reply(0xA1B2_C3D4, REPLY_ERROR);
    assert_eq!(u32_at(&reply, 0), event_type::GET_REPORT_REPLY);
    assert_eq!(u32_at(&reply, offset::GET_REPORT_REPLY_ID), 0xA1B2_C3D4);
    assert_eq!(u16_at(&reply, offset::GET_REPORT_REPLY_ERR), 5);
    assert_eq!(u16_at(&reply, offset::GET_REPORT_REPLY_SIZE), 0);

    let reply = encode_set_report_reply(7, REPLY_ERROR);
    assert_eq!(u32_at(&reply, 0), event_type::SET_REPORT_REPLY);
    assert_eq!(u32_at(&reply, offset::SET_REPORT_REPLY_ID), 7);
    assert_eq!(u16_at(&reply, offset::SET_REPORT_REPLY_ERR), 5);

    assert_eq!(u32_at(&encode_destroy(), 0), event_type::DESTROY);
}

#[test]
fn decodes_kernel_events() {
    let flags = 0x4u64.to_ne_bytes();
    assert_eq!(
        decode_event(&kernel_event(
            event_type::START,
            &[(offset::START_DEV_FLAGS, &flags)]
        )),
        Ok(KernelEvent::Start { dev_flags: 4 })
    );
    for (kind, expected) in [
        (event_type::STOP, KernelEvent::Stop),
        (event_type::OPEN, KernelEvent::Open),
        (event_type::CLOSE, KernelEvent::Close),
        (99, KernelEvent::Other(99)),
    ] {
        assert_eq!(decode_event(&kernel_event(kind, &[])), Ok(expected));
    }
    let mut data = vec![0u8];
    data.extend_from_slice(&sample_report());
    assert_eq!(
        decode_event(&output_event(&data, report_type::OUTPUT)),
        Ok(KernelEvent::Output {
            data: data.clone(),
            rtype: report_type::OUTPUT
        })
    );
    assert_eq!(
        decode_event(&kernel_event(
            event_type::GET_REPORT,
            &[
                (offset::GET_REPORT_ID, &9u32.to_ne_bytes()),
                (offset::GET_REPORT_RNUM, &[2]),
                (offset::GET_REPORT_RTYPE, &[report_type::FEATURE]),
            ]
        )),
        Ok(KernelEvent::GetReport {
            id: 9,
            rnum: 2,
            rtype: 0
        })
    );
    assert_eq!(
        decode_event(&kernel_event(
            event_type::SET_REPORT,
            &[
                (offset::SET_REPORT_ID, &10u32.to_ne_bytes()),
                (offset::SET_REPORT_RNUM, &[0]),
                (offset::SET_REPORT_RTYPE, &[report_type::OUTPUT]),
                (offset::SET_REPORT_SIZE, &65u16.to_ne_bytes()),
            ]
        )),
        Ok(KernelEvent::SetReport {
            id: 10,
            rnum: 0,
            rtype: 1,
            size: 65
        })
    );
}

#[test]
fn hostile_events_are_errors_not_panics() {
    for len in 0..4 {
        assert_eq!(decode_event(&vec![0xFF; len]), Err(DecodeError::Short(len)));
    }
    // Short events read as zero-extended.
    assert_eq!(
        decode_event(&event_type::START.to_ne_bytes()),
        Ok(KernelEvent::Start { dev_flags: 0 })
    );
    assert_eq!(
        decode_event(&event_type::OUTPUT.to_ne_bytes()),
        Ok(KernelEvent::Output {
            data: Vec::new(),
            rtype: 0
        })
    );
    // A size past UHID_DATA_MAX.
    let mut event = output_event(&[], report_type::OUTPUT);
    event[offset::OUTPUT_SIZE..offset::OUTPUT_SIZE + 2].copy_from_slice(&4097u16.to_ne_bytes());
    assert_eq!(decode_event(&event), Err(DecodeError::OutputSize(4097)));
    event[offset::OUTPUT_SIZE..offset::OUTPUT_SIZE + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
    assert_eq!(decode_event(&event), Err(DecodeError::OutputSize(u16::MAX)));
    // Longer than an event, truncated data, random bytes: no panic.
    assert!(decode_event(&vec![0u8; EVENT_SIZE * 2]).is_ok());
    let mut short = output_event(&[7; 100], report_type::OUTPUT);
    short.truncate(50);
    let Ok(KernelEvent::Output { data, .. }) = decode_event(&short) else {
        panic!("a truncated output event still decodes");
    };
    assert_eq!(
        data.len(),
        0,
        "the size field was cut off, so it reads as 0"
    );
    let mut seed = 0x1234_5678u32;
    for _ in 0..2000 {
        let len = usize::try_from(seed % 200).unwrap();
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                seed.to_be_bytes()[1]
            })
            .collect();
        let _ = decode_event(&bytes);
    }
}

#[test]
fn output_reports_with_and_without_report_number() {
    let report = sample_report();
    let mut numbered = vec![0u8];
    numbered.extend_from_slice(&report);
    assert_eq!(ctaphid_report(&numbered), Ok(report));
    assert_eq!(ctaphid_report(&report), Ok(report));
    numbered[0] = 3;
    assert_eq!(ctaphid_report(&numbered), Err(ReportError::ReportId(3)));
    for len in [0, 1, 2, 63, 66, 128, 4096] {
        assert_eq!(
            ctaphid_report(&vec![0u8; len]),
            Err(ReportError::Length(len))
        );
    }
    assert!(ReportError::Length(10).to_string().contains("64 bytes"));
}

#[test]
fn missing_or_forbidden_dev_uhid_names_the_cause_and_the_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("uhid");
    let error = UhidLane::open(&missing, &DeviceIdentity::fidelio("t")).unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("sudo modprobe uhid"), "{text}");
    assert!(text.contains("fidelio doctor"), "{text}");

    let denied = UhidError::Open {
        path: PathBuf::from(DEFAULT_PATH),
        source: io::Error::from(io::ErrorKind::PermissionDenied),
    }
    .to_string();
    assert!(
        denied.contains("/dev/uhid read-write: permission denied"),
        "{denied}"
    );
    assert!(denied.contains("fidelio doctor"), "{denied}");

    let no_driver = UhidError::Open {
        path: PathBuf::from(DEFAULT_PATH),
        source: io::Error::from_raw_os_error(ENODEV),
    }
    .to_string();
    assert!(no_driver.contains("modprobe uhid"), "{no_driver}");

    let create = UhidError::Create(io::Error::from_raw_os_error(22)).to_string();
    assert!(create.contains("refused to create"), "{create}");
}

/// The fake kernel's side of a lane: reads what the lane writes, sends kernel events.
struct FakeKernel {
    socket: UnixDatagram,
}

impl FakeKernel {
    fn next(&self) -> Vec<u8> {
        let mut buffer = vec![0u8; EVENT_SIZE + 16];
        let len = self
            .socket
            .recv(&mut buffer)
            .expect("an event from the lane");
        buffer.truncate(len);
        buffer
    }

    fn send(&self, event: &[u8]) {
        self.socket.send(event).unwrap();
    }
}

fn lane_with_fake_kernel() -> (UhidLane<UnixDatagram>, FakeKernel) {
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let lane = UhidLane::create(ours, &DeviceIdentity::fidelio("fake-1")).unwrap();
    let kernel = FakeKernel { socket: theirs };
    let create = kernel.next();
    assert_eq!(create.len(), EVENT_SIZE);
    assert_eq!(u32_at(&create, 0), event_type::CREATE2);
    (lane, kernel)
}

#[test]
fn the_lane_carries_reports_both_ways_and_refuses_report_requests() {
    let (lane, kernel) = lane_with_fake_kernel();
    assert_eq!(lane.uniq(), "fake-1");
    let (device, mut inbound) = mpsc::channel(8);
    let reader = lane.spawn_reader(device).unwrap();

    // Noise first: none of it reaches the device, none of it stops the reader.
    kernel.send(&[1, 2]);
    kernel.send(&kernel_event(event_type::START, &[]));
    kernel.send(&kernel_event(event_type::OPEN, &[]));
    kernel.send(&output_event(&[0; 10], report_type::OUTPUT));
    let mut wrong_id = vec![5u8];
    wrong_id.extend_from_slice(&sample_report());
    kernel.send(&output_event(&wrong_id, report_type::OUTPUT));
    kernel.send(&output_event(&sample_report(), report_type::FEATURE));
    let mut too_big = output_event(&[], report_type::OUTPUT);
    too_big[offset::OUTPUT_SIZE..offset::OUTPUT_SIZE + 2].copy_from_slice(&9000u16.to_ne_bytes());
    kernel.send(&too_big);
    kernel.send(&kernel_event(77, &[]));

    // A hidraw write: report number 0, then the report.
    let report = sample_report();
    let mut written = vec![0u8];
    written.extend_from_slice(&report);
    kernel.send(&output_event(&written, report_type::OUTPUT));
    // A bare 64-byte write.
    let mut bare = report;
    bare[0] = 0xEE;
    kernel.send(&output_event(&bare, report_type::OUTPUT));

    let first = inbound.blocking_recv().unwrap();
    assert_eq!(first.packet, report);
    assert_eq!(first.from, Peer::Uhid);
    let second = inbound.blocking_recv().unwrap();
    assert_eq!(second.packet, bare);
    assert!(inbound.try_recv().is_err(), "the noise produced no report");

    // Report requests are answered at once, with an error, echoing the ID.
    kernel.send(&kernel_event(
        event_type::GET_REPORT,
        &[(offset::GET_REPORT_ID, &41u32.to_ne_bytes())],
    ));
    let reply = kernel.next();
    assert_eq!(reply.len(), GET_REPORT_REPLY_LEN);
    assert_eq!(u32_at(&reply, 0), event_type::GET_REPORT_REPLY);
    assert_eq!(u32_at(&reply, offset::GET_REPORT_REPLY_ID), 41);
    assert_ne!(u16_at(&reply, offset::GET_REPORT_REPLY_ERR), 0);
    kernel.send(&kernel_event(
        event_type::SET_REPORT,
        &[(offset::SET_REPORT_ID, &42u32.to_ne_bytes())],
    ));
    let reply = kernel.next();
    assert_eq!(reply.len(), SET_REPORT_REPLY_LEN);
    assert_eq!(u32_at(&reply, 0), event_type::SET_REPORT_REPLY);
    assert_eq!(u32_at(&reply, offset::SET_REPORT_REPLY_ID), 42);
    assert_ne!(u16_at(&reply, offset::SET_REPORT_REPLY_ERR), 0);

    // The device's answers become UHID_INPUT2, for the UHID peer only.
    let outbound = lane.outbound();
    let udp_peer = Peer::Udp(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
    outbound.send(&udp_peer, &[0xAA; PACKET_SIZE]);
    outbound.send(&Peer::Uhid, &report);
    let input = kernel.next();
    assert_eq!(input.len(), INPUT2_LEN);
    assert_eq!(u32_at(&input, 0), event_type::INPUT2);
    assert_eq!(u16_at(&input, offset::INPUT2_SIZE), 64);
    assert_eq!(&input[offset::INPUT2_DATA..], &report);

    // A STOP before shutdown does not end the reader.
    kernel.send(&kernel_event(event_type::STOP, &[]));
    kernel.send(&output_event(&written, report_type::OUTPUT));
    assert_eq!(inbound.blocking_recv().unwrap().packet, report);

    // Shutdown: UHID_DESTROY goes out, and the kernel's STOP ends the reader.
    lane.destroy();
    let destroy = kernel.next();
    assert_eq!(destroy, event_type::DESTROY.to_ne_bytes());
    kernel.send(&kernel_event(event_type::STOP, &[]));
    reader.join().unwrap();
    drop(outbound);
}

#[test]
fn the_reader_ends_when_the_device_loop_or_the_file_goes_away() {
    let (lane, kernel) = lane_with_fake_kernel();
    let (device, inbound) = mpsc::channel(1);
    let reader = lane.spawn_reader(device).unwrap();
    drop(inbound);
    let mut written = vec![0u8];
    written.extend_from_slice(&sample_report());
    kernel.send(&output_event(&written, report_type::OUTPUT));
    reader.join().unwrap();

    // A zero-length read is the end of the file.
    let (device, _inbound) = mpsc::channel(1);
    let reader = lane.spawn_reader(device).unwrap();
    kernel.send(&[]);
    reader.join().unwrap();
    drop(lane);
    assert_eq!(kernel.next(), event_type::DESTROY.to_ne_bytes());
}

#[test]
fn finds_its_hidraw_node_by_serial() {
    let sys = tempfile::tempdir().unwrap();
    let class = sys.path().join("class/hidraw");
    for (node, uniq) in [
        ("hidraw0", "0123456789"),
        ("hidraw2", "fidelio-77"),
        ("hidraw1", ""),
    ] {
        let device = class.join(node).join("device");
        std::fs::create_dir_all(&device).unwrap();
        std::fs::write(
            device.join("uevent"),
            format!(
                "DRIVER=hid-generic\nHID_ID=0003:00001209:00000001\nHID_NAME=Fidelio FIDO2 Authenticator\nHID_PHYS=fidelio/uhid\nHID_UNIQ={uniq}\nMODALIAS=hid:b0003g0001v00001209p00000001\n"
            ),
        )
        .unwrap();
    }
    std::fs::create_dir_all(class.join("hidraw9")).unwrap();
    assert_eq!(
        find_hidraw(sys.path(), "fidelio-77"),
        Some("hidraw2".to_owned())
    );
    assert_eq!(find_hidraw(sys.path(), "fidelio-78"), None);
    assert_eq!(find_hidraw(&sys.path().join("nothing"), "fidelio-77"), None);
    assert_eq!(uevent_value("A=1\nHID_UNIQ=x=y\n", "HID_UNIQ"), Some("x=y"));
    assert_eq!(uevent_value("HID_UNIQX=1", "HID_UNIQ"), None);
}
