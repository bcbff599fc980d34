//! `fidelio doctor`: can this machine run the OS lanes, and if not, what exactly to do.
//!
//! The UHID lane (`fidelio serve --uhid`) needs the kernel's `uhid` driver, read-write access
//! to `/dev/uhid` for the daemon's user, and access to the resulting `/dev/hidrawN` for the
//! users of browsers and tools. The USB/IP lane needs nothing on the daemon's side; what the
//! attaching machine needs (`vhci_hcd`, the `usbip` tool) is reported for information.
//!
//! Every check reads files under [`Roots`], so the tests run each branch against fake
//! `/dev`, `/sys` and `/lib/modules` trees in temporary directories.

use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value as Json, json};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the result as one JSON object: `uhid_ready` and every check with its lane,
    /// status (pass, fail, note), summary and fix (text and command lines).
    #[arg(long)]
    json: bool,
}

/// The FIDO usage page (0xF1D0) as the first item of a report descriptor: `06 D0 F1`.
pub const FIDO_USAGE_PAGE_ITEM: [u8; 3] = [0x06, 0xD0, 0xF1];
/// Fidelio's USB IDs, as udev and sysfs spell them.
const VENDOR: u32 = 0x1209;
const PRODUCT: u32 = 0x0001;
/// The group the suggested udev rules give the devices to.
const GROUP: &str = "fidelio";
/// The misc-device minor of /dev/uhid (`UHID_MINOR`; misc devices have major 10).
const UHID_MINOR: u32 = 239;
/// errno values that mean "no driver behind this node".
const ENXIO: i32 = 6;
const ENODEV: i32 = 19;

/// How a node is opened to test access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Read,
    /// Write only.
    Write,
    /// Read and write (what the lanes and hosts need).
    ReadWrite,
}

/// Where the checks look: the real system, or a fake tree in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    /// `/dev`.
    pub dev: PathBuf,
    /// `/sys`.
    pub sys: PathBuf,
    /// `/proc` (kernel release, this process's user).
    pub proc: PathBuf,
    /// `/etc` (user and group names).
    pub etc: PathBuf,
    /// `/lib/modules` (modules.builtin, modules.dep per kernel release).
    pub modules: PathBuf,
    /// udev rule directories, in udev's order.
    pub udev_rules: Vec<PathBuf>,
    /// Where to look for the `usbip` program.
    pub path: Vec<PathBuf>,
    /// Opens a node the way a lane or host would, and closes it again.
    pub open: fn(&Path, Access) -> io::Result<()>,
}

fn open_node(path: &Path, access: Access) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .read(access != Access::Write)
        .write(access != Access::Read)
        .open(path)
        .map(drop)
}

impl Roots {
    /// This machine.
    pub fn system() -> Self {
        let mut path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|value| std::env::split_paths(&value).collect())
            .unwrap_or_default();
        // usbip lives in sbin, which ordinary users often lack in PATH.
        for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
            let extra = PathBuf::from(extra);
            if !path.contains(&extra) {
                path.push(extra);
            }
        }
        Self {
            dev: PathBuf::from("/dev"),
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
            etc: PathBuf::from("/etc"),
            modules: PathBuf::from("/lib/modules"),
            udev_rules: [
                "/etc/udev/rules.d",
                "/run/udev/rules.d",
                "/usr/lib/udev/rules.d",
                "/lib/udev/rules.d",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            path,
            open: open_node,
        }
    }
}

/// Which lane a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `fidelio serve --uhid`: its failures make the exit status 1.
    Uhid,
    /// USB/IP: informational.
    Usbip,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// ✔
    Pass,
    /// ✘ — with a fix.
    Fail,
    /// – worth knowing, not a failure.
    Note,
}

/// One line of a fix: words, or a command to run as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixLine {
    /// Explanation.
    Text(String),
    /// A shell command.
    Command(String),
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The lane it concerns.
    pub lane: Lane,
    /// A stable name (`uhid-module`, `dev-uhid`, `hidraw`, `vhci-hcd`, `usbip-tool`).
    pub id: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, one line.
    pub summary: String,
    /// What to do about it (empty when nothing needs doing).
    pub fix: Vec<FixLine>,
}

impl Check {
    fn new(lane: Lane, id: &'static str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            lane,
            id,
            status,
            summary: summary.into(),
            fix: Vec::new(),
        }
    }

    fn with_fix(mut self, fix: Vec<FixLine>) -> Self {
        self.fix = fix;
        self
    }
}

fn text(line: impl Into<String>) -> FixLine {
    FixLine::Text(line.into())
}

fn command(line: impl Into<String>) -> FixLine {
    FixLine::Command(line.into())
}

/// Runs every check.
pub fn run_checks(roots: &Roots) -> Vec<Check> {
    let mut checks = vec![uhid_module(roots), dev_uhid(roots)];
    checks.extend(hidraw_nodes(roots));
    checks.push(vhci_module(roots));
    checks.push(usbip_tool(roots));
    checks
}

/// True when nothing stands in the way of `fidelio serve --uhid`.
pub fn uhid_ready(checks: &[Check]) -> bool {
    !checks
        .iter()
        .any(|check| check.lane == Lane::Uhid && check.status == Status::Fail)
}

/// `fidelio doctor`.
pub fn run(args: &DoctorArgs) -> ExitCode {
    let checks = run_checks(&Roots::system());
    if args.json {
        println!("{:#}", render_json(&checks));
    } else {
        print!("{}", render_text(&checks));
    }
    if uhid_ready(&checks) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------------
// Reading the system

/// Reads a small text file (sysfs attributes, module lists, passwd), at most 4 MiB.
fn read_text(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(4 << 20).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The first `limit` bytes of a binary file (a report descriptor).
fn read_prefix(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

fn kernel_release(roots: &Roots) -> Option<String> {
    read_text(&roots.proc.join("sys/kernel/osrelease"))
        .map(|release| release.trim().to_owned())
        .filter(|release| !release.is_empty() && !release.contains('/'))
}

/// How the kernel has a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModuleState {
    /// Loaded as a module (`/sys/module/NAME/initstate`).
    Loaded,
    /// Compiled into the kernel.
    BuiltIn,
    /// In modules.dep: `modprobe` can load it.
    Available,
    /// The module lists of this kernel do not have it.
    Absent,
    /// Not loaded, and no module lists to tell more (no /lib/modules/RELEASE).
    Unknown,
}

/// A module's name as sysfs spells it, from a path in modules.dep or modules.builtin
/// (`kernel/drivers/usb/usbip/vhci-hcd.ko.xz` → `vhci_hcd`).
fn module_name(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let (stem, _) = file.split_once(".ko")?;
    Some(stem.replace('-', "_"))
}

fn lists_module(list: &str, name: &str) -> bool {
    list.lines().any(|line| {
        let path = line.split(':').next().unwrap_or("");
        module_name(path).as_deref() == Some(name)
    })
}

fn module_state(roots: &Roots, name: &str) -> ModuleState {
    let sysfs = roots.sys.join("module").join(name);
    if sysfs.join("initstate").exists() {
        return ModuleState::Loaded;
    }
    if sysfs.is_dir() {
        return ModuleState::BuiltIn;
    }
    let Some(tree) = kernel_release(roots).map(|release| roots.modules.join(release)) else {
        return ModuleState::Unknown;
    };
    if read_text(&tree.join("modules.builtin")).is_some_and(|list| lists_module(&list, name)) {
        return ModuleState::BuiltIn;
    }
    match read_text(&tree.join("modules.dep")) {
        Some(list) if lists_module(&list, name) => ModuleState::Available,
        Some(_) => ModuleState::Absent,
        None => ModuleState::Unknown,
    }
}

/// `name` for a uid or gid from an `/etc/passwd`- or `/etc/group`-style file.
fn name_of(file: &Path, id: u32) -> Option<String> {
    read_text(file)?.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let number = fields.nth(1)?;
        (number.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

/// Who runs this doctor: a user name if it can be found.
fn current_user(roots: &Roots) -> String {
    let uid = std::fs::metadata(roots.proc.join("self")).map(|meta| meta.uid());
    match uid {
        Ok(uid) => name_of(&roots.etc.join("passwd"), uid).unwrap_or_else(|| format!("uid {uid}")),
        Err(_) => std::env::var("USER").unwrap_or_else(|_| "this user".to_owned()),
    }
}

/// `owner:group mode` of a node, for messages.
fn ownership(roots: &Roots, path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let owner = name_of(&roots.etc.join("passwd"), meta.uid())
                .unwrap_or_else(|| meta.uid().to_string());
            let group = name_of(&roots.etc.join("group"), meta.gid())
                .unwrap_or_else(|| meta.gid().to_string());
            format!("{owner}:{group} {:04o}", meta.permissions().mode() & 0o7777)
        }
        Err(error) => format!("unreadable: {error}"),
    }
}

fn no_driver(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(ENODEV | ENXIO))
}

// ---------------------------------------------------------------------------------------
// UHID lane

fn modprobe_fix() -> Vec<FixLine> {
    vec![
        text("Load the uhid module now, and at every boot:"),
        command("sudo modprobe uhid"),
        command("echo uhid | sudo tee /etc/modules-load.d/fidelio.conf"),
    ]
}

fn uhid_module(roots: &Roots) -> Check {
    let check = |status, summary: String| Check::new(Lane::Uhid, "uhid-module", status, summary);
    let release = kernel_release(roots).unwrap_or_else(|| "this kernel".to_owned());
    let node = roots.dev.join("uhid");
    match module_state(roots, "uhid") {
        ModuleState::Loaded => check(Status::Pass, "uhid kernel module: loaded".to_owned()),
        ModuleState::BuiltIn => check(
            Status::Pass,
            "uhid kernel module: built into the kernel".to_owned(),
        ),
        _ if node.exists() => check(
            Status::Pass,
            format!(
                "uhid kernel module: not loaded yet; {} exists, and opening it loads the module",
                node.display()
            ),
        ),
        ModuleState::Available => check(
            Status::Fail,
            format!("uhid kernel module: available for {release} but not loaded"),
        )
        .with_fix(modprobe_fix()),
        ModuleState::Absent => check(
            Status::Fail,
            format!("uhid kernel module: {release} has none (not loaded, not built in, not in modules.dep)"),
        )
        .with_fix(vec![
            text("This kernel was built without CONFIG_UHID. Boot a kernel that has it (most distribution kernels build it as a module), or use a lane that needs no kernel support: `fidelio serve` (UDP) or the USB/IP lane."),
        ]),
        ModuleState::Unknown => {
            let mut fix = modprobe_fix();
            fix.push(text(format!(
                "If modprobe answers \"Module uhid not found\", {release} has no UHID (CONFIG_UHID): boot a kernel that has it, or use `fidelio serve` (UDP) or the USB/IP lane. In a container, load the module on the host and pass the device in (docker/podman: --device /dev/uhid)."
            )));
            check(
                Status::Fail,
                format!(
                    "uhid kernel module: not loaded (and {} has no module list for {release})",
                    roots.modules.display()
                ),
            )
            .with_fix(fix)
        }
    }
}

fn uhid_access_fix() -> Vec<FixLine> {
    vec![
        text(format!(
            "Give /dev/uhid to a group \"{GROUP}\" and join it. Whoever may write /dev/uhid can create any HID device, keyboards included: grant it only to users you would let type on this machine."
        )),
        command(format!("sudo groupadd --system {GROUP}")),
        command(format!("sudo usermod -aG {GROUP} \"$USER\"")),
        command(format!(
            "echo 'KERNEL==\"uhid\", SUBSYSTEM==\"misc\", GROUP=\"{GROUP}\", MODE=\"0660\"' | sudo tee /etc/udev/rules.d/70-fidelio-uhid.rules"
        )),
        command("sudo udevadm control --reload && sudo udevadm trigger"),
        text(format!(
            "Then log in again (or run `newgrp {GROUP}`) so the new group applies. On a desktop, TAG+=\"uaccess\" in place of GROUP/MODE gives the user at the local seat access without a group."
        )),
    ]
}

fn dev_uhid(roots: &Roots) -> Check {
    let node = roots.dev.join("uhid");
    let shown = node.display();
    let check = |status, summary: String| Check::new(Lane::Uhid, "dev-uhid", status, summary);
    if !node.exists() {
        let mut fix = vec![text(
            "The node appears when the uhid module loads (see the module check).",
        )];
        if module_state(roots, "uhid") == ModuleState::Loaded {
            fix = vec![
                text(
                    "The module is loaded but the node is missing: this is probably a container, or /dev is not devtmpfs. Pass the device in (docker/podman: --device /dev/uhid), or create it:",
                ),
                command(format!("sudo mknod -m 0660 /dev/uhid c 10 {UHID_MINOR}")),
            ];
        }
        return check(Status::Fail, format!("{shown}: missing")).with_fix(fix);
    }
    let user = current_user(roots);
    match (roots.open)(&node, Access::ReadWrite) {
        Ok(()) => check(
            Status::Pass,
            format!("{shown}: user {user} can open it read-write"),
        ),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => check(
            Status::Fail,
            format!(
                "{shown}: user {user} cannot open it read-write ({})",
                ownership(roots, &node)
            ),
        )
        .with_fix(uhid_access_fix()),
        Err(error) if no_driver(&error) => check(
            Status::Fail,
            format!("{shown}: no driver behind it ({error})"),
        )
        .with_fix(modprobe_fix()),
        Err(error) => check(Status::Fail, format!("{shown}: cannot open it: {error}")),
    }
}

/// A hidraw node whose HID device speaks FIDO.
#[derive(Debug, Clone)]
struct FidoNode {
    node: PathBuf,
    name: String,
    vendor: Option<u32>,
    product: Option<u32>,
    uniq: String,
}

impl FidoNode {
    fn is_fidelio(&self) -> bool {
        self.vendor == Some(VENDOR) && self.product == Some(PRODUCT)
    }

    fn describe(&self) -> String {
        let ids = match (self.vendor, self.product) {
            (Some(vendor), Some(product)) => format!("{vendor:04x}:{product:04x}"),
            _ => "IDs unknown".to_owned(),
        };
        let name = if self.name.is_empty() {
            "(no name)"
        } else {
            &self.name
        };
        if self.uniq.is_empty() {
            format!("{}: {name} ({ids})", self.node.display())
        } else {
            format!(
                "{}: {name} ({ids}, serial {})",
                self.node.display(),
                self.uniq
            )
        }
    }
}

/// `HID_ID=0003:00001209:00000001` → vendor, product.
fn hid_ids(uevent: &str) -> (Option<u32>, Option<u32>) {
    let Some(id) = fidelio_daemon::uhid::uevent_value(uevent, "HID_ID") else {
        return (None, None);
    };
    let mut parts = id.split(':').skip(1);
    let mut number = || {
        parts
            .next()
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
    };
    (number(), number())
}

fn fido_nodes(roots: &Roots) -> Vec<FidoNode> {
    let Ok(entries) = std::fs::read_dir(roots.sys.join("class/hidraw")) else {
        return Vec::new();
    };
    let mut nodes: Vec<FidoNode> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let device = entry.path().join("device");
            let descriptor = read_prefix(&device.join("report_descriptor"), 3)?;
            if !descriptor.starts_with(&FIDO_USAGE_PAGE_ITEM) {
                return None;
            }
            let uevent = read_text(&device.join("uevent")).unwrap_or_default();
            let value = |key| {
                fidelio_daemon::uhid::uevent_value(&uevent, key)
                    .unwrap_or("")
                    .to_owned()
            };
            let (vendor, product) = hid_ids(&uevent);
            Some(FidoNode {
                node: roots.dev.join(entry.file_name()),
                name: value("HID_NAME"),
                vendor,
                product,
                uniq: value("HID_UNIQ"),
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes
}

/// How a user may use a node.
fn access_words(roots: &Roots, node: &Path) -> Result<&'static str, String> {
    match (roots.open)(node, Access::ReadWrite) {
        Ok(()) => return Ok("read-write"),
        Err(error) if error.kind() != io::ErrorKind::PermissionDenied => {
            return Err(format!("cannot open it: {error}"));
        }
        Err(_) => {}
    }
    let read = (roots.open)(node, Access::Read).is_ok();
    let write = (roots.open)(node, Access::Write).is_ok();
    Err(match (read, write) {
        (true, _) => "read-only",
        (_, true) => "write-only",
        _ => "no access",
    }
    .to_owned())
}

fn fido_id_rules(roots: &Roots) -> Option<PathBuf> {
    roots
        .udev_rules
        .iter()
        .map(|dir| dir.join("60-fido-id.rules"))
        .find(|rules| rules.exists())
}

fn hidraw_fix(roots: &Roots) -> Vec<FixLine> {
    let mut fix = Vec::new();
    match fido_id_rules(roots) {
        Some(rules) => fix.push(text(format!(
            "systemd's {} marks FIDO hidraw nodes as security tokens, and 70-uaccess.rules gives them to the user logged in at the local seat — not to ssh, CI or container sessions, nor to other users. For those:",
            rules.display()
        ))),
        None => fix.push(text(
            "This system has no 60-fido-id.rules (systemd's udev ships it from v244 on), so nothing grants FIDO hidraw nodes to users. Add a rule:",
        )),
    }
    fix.extend([
        command(format!("sudo groupadd --system {GROUP}")),
        command(format!("sudo usermod -aG {GROUP} \"$USER\"")),
        command(format!(
            "echo 'KERNEL==\"hidraw*\", SUBSYSTEM==\"hidraw\", KERNELS==\"0003:{VENDOR:04X}:{PRODUCT:04X}.*\", GROUP=\"{GROUP}\", MODE=\"0660\", TAG+=\"uaccess\"' | sudo tee /etc/udev/rules.d/70-fidelio-hidraw.rules"
        )),
        command("sudo udevadm control --reload && sudo udevadm trigger"),
        text(format!(
            "KERNELS==\"0003:{VENDOR:04X}:{PRODUCT:04X}.*\" matches the HID device of a Fidelio key on any transport. A rule on ATTRS{{idVendor}}==\"{VENDOR:04x}\" only matches devices with a USB parent (boards, USB/IP), never the UHID device."
        )),
    ]);
    fix
}

fn hidraw_nodes(roots: &Roots) -> Vec<Check> {
    let nodes = fido_nodes(roots);
    if nodes.is_empty() {
        return vec![Check::new(
            Lane::Uhid,
            "hidraw",
            Status::Note,
            "FIDO hidraw nodes: none right now — start `fidelio serve --uhid`, then run `fidelio doctor` again (as the browser's user) to check its node",
        )];
    }
    nodes
        .iter()
        .map(|node| {
            let described = node.describe();
            let missing = !node.node.exists();
            match access_words(roots, &node.node) {
                Ok(words) => Check::new(
                    Lane::Uhid,
                    "hidraw",
                    Status::Pass,
                    format!("{described}: {words}"),
                ),
                Err(words) if !node.is_fidelio() => Check::new(
                    Lane::Uhid,
                    "hidraw",
                    Status::Note,
                    format!("{described}: {words} (not a Fidelio device; not counted)"),
                ),
                Err(words) if missing => Check::new(
                    Lane::Uhid,
                    "hidraw",
                    Status::Fail,
                    format!("{described}: the node is missing from {}", roots.dev.display()),
                )
                .with_fix(vec![text(format!(
                    "udev did not create it ({words}). In a container, pass the node in (docker/podman: --device {}).",
                    node.node.display()
                ))]),
                Err(words) => Check::new(
                    Lane::Uhid,
                    "hidraw",
                    Status::Fail,
                    format!(
                        "{described}: {words} for user {} ({})",
                        current_user(roots),
                        ownership(roots, &node.node)
                    ),
                )
                .with_fix(hidraw_fix(roots)),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// USB/IP lane (informational)

fn vhci_module(roots: &Roots) -> Check {
    let check = |status, summary: &str| Check::new(Lane::Usbip, "vhci-hcd", status, summary);
    match module_state(roots, "vhci_hcd") {
        ModuleState::Loaded => check(Status::Pass, "vhci_hcd kernel module: loaded"),
        ModuleState::BuiltIn => check(Status::Pass, "vhci_hcd: built into the kernel"),
        ModuleState::Available => check(
            Status::Note,
            "vhci_hcd kernel module: available, not loaded — needed only on the machine that attaches the device",
        )
        .with_fix(vec![command("sudo modprobe vhci-hcd")]),
        ModuleState::Absent | ModuleState::Unknown => check(
            Status::Note,
            "vhci_hcd kernel module: not found — needed only on the machine that attaches the device (`usbip attach`)",
        ),
    }
}

fn usbip_tool(roots: &Roots) -> Check {
    let found = roots.path.iter().map(|dir| dir.join("usbip")).find(|path| {
        std::fs::metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    });
    match found {
        Some(path) => Check::new(
            Lane::Usbip,
            "usbip-tool",
            Status::Pass,
            format!("usbip tool: {}", path.display()),
        ),
        None => Check::new(
            Lane::Usbip,
            "usbip-tool",
            Status::Note,
            "usbip tool: not installed — needed only on the machine that attaches the device",
        )
        .with_fix(vec![
            text("Debian and derivatives:"),
            command("sudo apt-get install usbip"),
        ]),
    }
}

// ---------------------------------------------------------------------------------------
// Output

fn mark(status: Status) -> &'static str {
    match status {
        Status::Pass => "✔",
        Status::Fail => "✘",
        Status::Note => "–",
    }
}

/// Explanations are wrapped to this many columns (commands never are).
const TEXT_WIDTH: usize = 88;

/// Splits `words` into lines of at most `width` characters (a longer word gets a line of its
/// own).
fn wrap(words: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in words.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The human-readable report.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    let sections = [
        (
            Lane::Uhid,
            "UHID lane (`fidelio serve --uhid`: a FIDO HID device in this kernel)",
        ),
        (
            Lane::Usbip,
            "USB/IP lane (for information: the daemon side needs nothing)",
        ),
    ];
    for (lane, title) in sections {
        out.push_str(title);
        out.push('\n');
        for check in checks.iter().filter(|check| check.lane == lane) {
            out.push_str(&format!("  {} {}\n", mark(check.status), check.summary));
            for line in &check.fix {
                match line {
                    FixLine::Text(words) => {
                        for line in wrap(words, TEXT_WIDTH) {
                            out.push_str(&format!("      {line}\n"));
                        }
                    }
                    FixLine::Command(command) => out.push_str(&format!("          {command}\n")),
                }
            }
        }
        out.push('\n');
    }
    let failures = checks
        .iter()
        .filter(|check| check.lane == Lane::Uhid && check.status == Status::Fail)
        .count();
    if failures == 0 {
        out.push_str("UHID lane: ready.\n");
    } else {
        let plural = if failures == 1 { "" } else { "s" };
        out.push_str(&format!(
            "UHID lane: not ready — {failures} problem{plural} above.\n"
        ));
    }
    out
}

/// The JSON report.
pub fn render_json(checks: &[Check]) -> Json {
    let checks: Vec<Json> = checks
        .iter()
        .map(|check| {
            let fix: Vec<Json> = check
                .fix
                .iter()
                .map(|line| match line {
                    FixLine::Text(words) => json!({"text": words}),
                    FixLine::Command(command) => json!({"command": command}),
                })
                .collect();
            json!({
                "lane": match check.lane { Lane::Uhid => "uhid", Lane::Usbip => "usbip" },
                "check": check.id,
                "status": match check.status {
                    Status::Pass => "pass",
                    Status::Fail => "fail",
                    Status::Note => "note",
                },
                "summary": check.summary,
                "fix": fix,
            })
        })
        .collect();
    let ready = !checks.iter().any(|check| {
        check.get("lane") == Some(&json!("uhid")) && check.get("status") == Some(&json!("fail"))
    });
    json!({"uhid_ready": ready, "checks": checks})
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]
mod tests {
    use super::*;

    /// Fake opener: a node is denied when a sibling `NAME.deny` exists, read-only with
    /// `NAME.ro`, has no driver with `NAME.nodev`; otherwise it opens (if it exists).
    fn fake_open(path: &Path, access: Access) -> io::Result<()> {
        let marker = |suffix: &str| {
            let mut name = path.file_name().unwrap().to_os_string();
            name.push(suffix);
            path.with_file_name(name).exists()
        };
        if marker(".deny") {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if marker(".ro") && access != Access::Read {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if marker(".nodev") {
            return Err(io::Error::from_raw_os_error(ENODEV));
        }
        std::fs::metadata(path).map(drop)
    }

    struct Tree {
        dir: tempfile::TempDir,
        roots: Roots,
    }

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let at = |name: &str| dir.path().join(name);
            let roots = Roots {
                dev: at("dev"),
                sys: at("sys"),
                proc: at("proc"),
                etc: at("etc"),
                modules: at("lib/modules"),
                udev_rules: vec![at("etc/udev/rules.d"), at("usr/lib/udev/rules.d")],
                path: vec![at("bin")],
                open: fake_open,
            };
            for path in [&roots.dev, &roots.sys, &roots.etc, &roots.proc] {
                std::fs::create_dir_all(path).unwrap();
            }
            std::fs::create_dir_all(roots.proc.join("sys/kernel")).unwrap();
            std::fs::write(roots.proc.join("sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
            Self { dir, roots }
        }

        fn file(&self, path: &str, contents: impl AsRef<[u8]>) -> PathBuf {
            let path = self.dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            path
        }

        fn checks(&self) -> Vec<Check> {
            run_checks(&self.roots)
        }

        fn hidraw(&self, node: &str, descriptor: &[u8], hid_id: &str, name: &str, uniq: &str) {
            self.file(
                &format!("sys/class/hidraw/{node}/device/report_descriptor"),
                descriptor,
            );
            self.file(
                &format!("sys/class/hidraw/{node}/device/uevent"),
                format!("DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME={name}\nHID_PHYS=x\nHID_UNIQ={uniq}\n"),
            );
            self.file(&format!("dev/{node}"), "");
        }
    }

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks.iter().find(|check| check.id == id).unwrap()
    }

    fn commands(check: &Check) -> Vec<&str> {
        check
            .fix
            .iter()
            .filter_map(|line| match line {
                FixLine::Command(command) => Some(command.as_str()),
                FixLine::Text(_) => None,
            })
            .collect()
    }

    fn all_text(check: &Check) -> String {
        check
            .fix
            .iter()
            .map(|line| match line {
                FixLine::Text(words) | FixLine::Command(words) => words.as_str(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    const FIDO_DESCRIPTOR: &[u8] = &[0x06, 0xD0, 0xF1, 0x09, 0x01, 0xA1, 0x01];
    const KEYBOARD_DESCRIPTOR: &[u8] = &[0x05, 0x01, 0x09, 0x06, 0xA1, 0x01];

    #[test]
    fn a_bare_machine_fails_with_the_modprobe_fix() {
        let tree = Tree::new();
        let checks = tree.checks();
        let module = find(&checks, "uhid-module");
        assert_eq!(module.status, Status::Fail);
        assert!(module.summary.contains("not loaded"), "{}", module.summary);
        assert!(module.summary.contains("6.1.0-test"), "{}", module.summary);
        assert_eq!(
            commands(module),
            [
                "sudo modprobe uhid",
                "echo uhid | sudo tee /etc/modules-load.d/fidelio.conf"
            ]
        );
        assert!(all_text(module).contains("CONFIG_UHID"));
        let node = find(&checks, "dev-uhid");
        assert_eq!(node.status, Status::Fail);
        assert!(node.summary.ends_with("uhid: missing"), "{}", node.summary);
        assert_eq!(find(&checks, "hidraw").status, Status::Note);
        assert!(!uhid_ready(&checks));
        let report = render_text(&checks);
        assert!(report.contains("✘ uhid kernel module"), "{report}");
        assert!(
            report.contains("          sudo modprobe uhid\n"),
            "{report}"
        );
        assert!(
            report.contains("UHID lane: not ready — 2 problems above."),
            "{report}"
        );
    }

    #[test]
    fn module_states() {
        // Loaded as a module.
        let tree = Tree::new();
        tree.file("sys/module/uhid/initstate", "live\n");
        let checks = tree.checks();
        assert_eq!(find(&checks, "uhid-module").status, Status::Pass);
        assert!(find(&checks, "uhid-module").summary.ends_with("loaded"));

        // Built in: in sysfs without initstate, or listed in modules.builtin.
        let tree = Tree::new();
        std::fs::create_dir_all(tree.roots.sys.join("module/uhid/parameters")).unwrap();
        assert!(
            find(&tree.checks(), "uhid-module")
                .summary
                .contains("built into")
        );
        let tree = Tree::new();
        tree.file(
            "lib/modules/6.1.0-test/modules.builtin",
            "kernel/drivers/hid/hid.ko\nkernel/drivers/hid/uhid.ko\n",
        );
        assert!(
            find(&tree.checks(), "uhid-module")
                .summary
                .contains("built into")
        );

        // Available, not loaded.
        let tree = Tree::new();
        tree.file("lib/modules/6.1.0-test/modules.builtin", "");
        tree.file(
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/drivers/hid/usbhid/usbhid.ko.xz: kernel/drivers/hid/hid.ko.xz\nkernel/drivers/hid/uhid.ko.xz: kernel/drivers/hid/hid.ko.xz\n",
        );
        let checks = tree.checks();
        let module = find(&checks, "uhid-module");
        assert_eq!(module.status, Status::Fail);
        assert!(module.summary.contains("available"), "{}", module.summary);
        assert_eq!(commands(module)[0], "sudo modprobe uhid");

        // Not in this kernel at all.
        let tree = Tree::new();
        tree.file(
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/drivers/hid/uhidx.ko:\nkernel/drivers/hid/usbhid/usbhid.ko:\n",
        );
        let checks = tree.checks();
        let module = find(&checks, "uhid-module");
        assert_eq!(module.status, Status::Fail);
        assert!(module.summary.contains("has none"), "{}", module.summary);
        assert!(commands(module).is_empty());
        assert!(all_text(module).contains("CONFIG_UHID"));

        // Not loaded, but the node is there: opening it loads the module.
        let tree = Tree::new();
        tree.file("dev/uhid", "");
        let checks = tree.checks();
        assert_eq!(find(&checks, "uhid-module").status, Status::Pass);
        assert!(
            find(&checks, "uhid-module")
                .summary
                .contains("not loaded yet")
        );
        assert_eq!(find(&checks, "dev-uhid").status, Status::Pass);
        assert!(uhid_ready(&checks));
    }

    #[test]
    fn dev_uhid_access() {
        let tree = Tree::new();
        tree.file("sys/module/uhid/initstate", "live\n");
        tree.file("dev/uhid", "");
        let checks = tree.checks();
        assert_eq!(find(&checks, "dev-uhid").status, Status::Pass);
        assert!(uhid_ready(&checks));
        assert!(render_text(&checks).contains("UHID lane: ready."));

        tree.file("dev/uhid.deny", "");
        let checks = tree.checks();
        let node = find(&checks, "dev-uhid");
        assert_eq!(node.status, Status::Fail);
        assert!(
            node.summary.contains("cannot open it read-write"),
            "{}",
            node.summary
        );
        let lines = commands(node);
        assert!(lines.iter().any(|line| {
            line.contains(r#"KERNEL=="uhid", SUBSYSTEM=="misc", GROUP="fidelio", MODE="0660""#)
                && line.contains("/etc/udev/rules.d/70-fidelio-uhid.rules")
        }));
        assert!(lines.contains(&"sudo udevadm control --reload && sudo udevadm trigger"));
        assert!(all_text(node).contains("uaccess"));
        assert!(all_text(node).contains("keyboards"));
        assert!(!uhid_ready(&checks));

        std::fs::remove_file(tree.roots.dev.join("uhid.deny")).unwrap();
        tree.file("dev/uhid.nodev", "");
        let node = find(&tree.checks(), "dev-uhid").clone();
        assert_eq!(node.status, Status::Fail);
        assert!(node.summary.contains("no driver"), "{}", node.summary);
        assert_eq!(commands(&node)[0], "sudo modprobe uhid");

        // Loaded module, no node: a container, most likely.
        std::fs::remove_file(tree.roots.dev.join("uhid")).unwrap();
        let node = find(&tree.checks(), "dev-uhid").clone();
        assert_eq!(node.status, Status::Fail);
        assert!(all_text(&node).contains("--device /dev/uhid"));
        assert!(commands(&node)[0].contains("mknod"));
    }

    #[test]
    fn hidraw_nodes_are_listed_and_judged() {
        let tree = Tree::new();
        tree.file("sys/module/uhid/initstate", "live\n");
        tree.file("dev/uhid", "");
        tree.hidraw(
            "hidraw0",
            KEYBOARD_DESCRIPTOR,
            "0003:0000046D:0000C31C",
            "Keyboard",
            "",
        );
        tree.hidraw(
            "hidraw1",
            FIDO_DESCRIPTOR,
            "0003:00001209:00000001",
            "Fidelio FIDO2 Authenticator",
            "fidelio-7",
        );
        tree.hidraw(
            "hidraw2",
            FIDO_DESCRIPTOR,
            "0003:00001050:00000407",
            "YubiKey",
            "",
        );
        tree.file("dev/hidraw2.deny", "");
        // A hidraw entry without a readable descriptor is skipped.
        std::fs::create_dir_all(tree.roots.sys.join("class/hidraw/hidraw9/device")).unwrap();

        let checks = tree.checks();
        let hidraw: Vec<&Check> = checks.iter().filter(|check| check.id == "hidraw").collect();
        assert_eq!(hidraw.len(), 2, "{hidraw:#?}");
        assert_eq!(hidraw[0].status, Status::Pass);
        assert!(
            hidraw[0].summary.contains(
                "hidraw1: Fidelio FIDO2 Authenticator (1209:0001, serial fidelio-7): read-write"
            ),
            "{}",
            hidraw[0].summary
        );
        assert_eq!(hidraw[1].status, Status::Note);
        assert!(hidraw[1].summary.contains("not a Fidelio device"));
        assert!(uhid_ready(&checks), "another vendor's key does not count");

        // Fidelio's node, read-only for this user.
        tree.file("dev/hidraw1.ro", "");
        let checks = tree.checks();
        let fidelio = checks
            .iter()
            .find(|check| check.summary.contains("hidraw1"))
            .unwrap();
        assert_eq!(fidelio.status, Status::Fail);
        assert!(fidelio.summary.contains("read-only"), "{}", fidelio.summary);
        let rule = commands(fidelio)
            .into_iter()
            .find(|line| line.contains("70-fidelio-hidraw.rules"))
            .unwrap();
        assert!(
            rule.contains(r#"KERNEL=="hidraw*", SUBSYSTEM=="hidraw", KERNELS=="0003:1209:0001.*""#),
            "{rule}"
        );
        assert!(rule.contains(r#"TAG+="uaccess""#), "{rule}");
        assert!(all_text(fidelio).contains("no 60-fido-id.rules"));
        assert!(all_text(fidelio).contains("ATTRS{idVendor}"));
        assert!(!uhid_ready(&checks));

        // With systemd's rule present, the fix says what it covers and what not.
        tree.file("usr/lib/udev/rules.d/60-fido-id.rules", "# systemd\n");
        let checks = tree.checks();
        let fidelio = checks
            .iter()
            .find(|check| check.summary.contains("hidraw1"))
            .unwrap();
        assert!(all_text(fidelio).contains("60-fido-id.rules marks FIDO hidraw nodes"));

        // The sysfs entry exists but udev made no node.
        std::fs::remove_file(tree.roots.dev.join("hidraw1")).unwrap();
        std::fs::remove_file(tree.roots.dev.join("hidraw1.ro")).unwrap();
        let checks = tree.checks();
        let fidelio = checks
            .iter()
            .find(|check| check.summary.contains("hidraw1"))
            .unwrap();
        assert_eq!(fidelio.status, Status::Fail);
        assert!(fidelio.summary.contains("missing"), "{}", fidelio.summary);
    }

    #[test]
    fn usbip_checks_are_informational() {
        let tree = Tree::new();
        tree.file("sys/module/uhid/initstate", "live\n");
        tree.file("dev/uhid", "");
        let checks = tree.checks();
        assert_eq!(find(&checks, "vhci-hcd").status, Status::Note);
        assert_eq!(find(&checks, "usbip-tool").status, Status::Note);
        assert_eq!(
            commands(find(&checks, "usbip-tool")),
            ["sudo apt-get install usbip"]
        );
        assert!(uhid_ready(&checks), "USB/IP notes never fail the UHID lane");

        tree.file(
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/drivers/usb/usbip/vhci-hcd.ko.zst: kernel/drivers/usb/usbip/usbip-core.ko.zst\n",
        );
        let usbip = tree.file("bin/usbip", "#!/bin/sh\n");
        let checks = tree.checks();
        assert!(find(&checks, "vhci-hcd").summary.contains("available"));
        assert_eq!(
            commands(find(&checks, "vhci-hcd")),
            ["sudo modprobe vhci-hcd"]
        );
        // Not executable: not the tool.
        assert_eq!(find(&checks, "usbip-tool").status, Status::Note);
        std::fs::set_permissions(&usbip, std::fs::Permissions::from_mode(0o755)).unwrap();
        tree.file("sys/module/vhci_hcd/initstate", "live\n");
        let checks = tree.checks();
        assert_eq!(find(&checks, "vhci-hcd").status, Status::Pass);
        assert_eq!(find(&checks, "usbip-tool").status, Status::Pass);
        assert!(find(&checks, "usbip-tool").summary.contains("bin/usbip"));
    }

    #[test]
    fn names_come_from_passwd_and_group() {
        let tree = Tree::new();
        tree.file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        );
        tree.file("etc/group", "root:x:0:\nfidelio:x:998:alice\n");
        assert_eq!(
            name_of(&tree.roots.etc.join("passwd"), 1000).as_deref(),
            Some("alice")
        );
        assert_eq!(
            name_of(&tree.roots.etc.join("group"), 998).as_deref(),
            Some("fidelio")
        );
        assert_eq!(name_of(&tree.roots.etc.join("group"), 5), None);
        assert_eq!(name_of(&tree.roots.etc.join("missing"), 0), None);
        assert_eq!(
            module_name("kernel/drivers/usb/usbip/vhci-hcd.ko.xz").as_deref(),
            Some("vhci_hcd")
        );
        assert_eq!(module_name("not-a-module.txt"), None);
        assert_eq!(
            hid_ids("HID_ID=0003:00001209:00000001"),
            (Some(0x1209), Some(1))
        );
        assert_eq!(hid_ids("HID_ID=garbage"), (None, None));
        assert_eq!(hid_ids(""), (None, None));
    }

    #[test]
    fn explanations_wrap_commands_do_not() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
        assert!(wrap("  ", 10).is_empty());
        let check = Check::new(Lane::Uhid, "t", Status::Fail, "s")
            .with_fix(vec![text("word ".repeat(40)), command("x".repeat(120))]);
        let report = render_text(&[check]);
        assert!(report.lines().any(|line| line.len() > 120));
        assert!(
            report
                .lines()
                .filter(|line| line.contains("word"))
                .all(|line| line.len() <= 6 + TEXT_WIDTH)
        );
    }

    #[test]
    fn json_report() {
        let tree = Tree::new();
        let report = render_json(&tree.checks());
        assert_eq!(report["uhid_ready"], json!(false));
        let checks = report["checks"].as_array().unwrap();
        let module = checks
            .iter()
            .find(|check| check["check"] == "uhid-module")
            .unwrap();
        assert_eq!(module["lane"], "uhid");
        assert_eq!(module["status"], "fail");
        assert_eq!(module["fix"][1], json!({"command": "sudo modprobe uhid"}));
        assert!(checks.iter().any(|check| check["lane"] == "usbip"));

        tree.file("sys/module/uhid/initstate", "live\n");
        tree.file("dev/uhid", "");
        assert_eq!(render_json(&tree.checks())["uhid_ready"], json!(true));
    }
}
