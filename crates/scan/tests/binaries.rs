//! Packages inside files built by the real tools: a Go binary from `go
//! build`, a Rust binary from `cargo auditable build`, an rpmdb written by
//! `rpm` itself, jars (zip files, nested) written by the `zip` crate. The
//! tool-built ones skip, saying so, when the tool is not installed
//! (scripts/install-test-deps installs them).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scan::inventory::Package;
use berth_scan::layers::{merge, walk_layer, Limits};
use berth_scan::osv::Ecosystem;
use berth_scan::packages::{inventory, Inventory};
use common::*;

const L1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn scan(tar: &[u8]) -> Inventory {
    let layers = [walk_layer(&gzip(tar)[..], L1, &Limits::default()).unwrap()];
    inventory(&merge(&layers))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-scan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn by_name<'a>(inv: &'a Inventory, name: &str) -> &'a Package {
    inv.packages
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", inv.packages))
}

#[test]
fn go_binary_built_by_go() {
    if !on_path("go") {
        eprintln!(
            "SKIP go_binary_built_by_go: `go` is not on PATH (Debian: apt-get install golang-go)"
        );
        return;
    }
    let dir = temp_dir("go");
    std::fs::write(
        dir.join("go.mod"),
        "module example.com/berthtest\n\ngo 1.19\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n)\n\nfunc main() {\n\tfmt.Println(http.StatusOK)\n}\n",
    )
    .unwrap();
    let go = |args: &[&str]| {
        let mut c = Command::new("go");
        c.args(args)
            .current_dir(&dir)
            .env("GOPATH", dir.join("gopath"))
            .env("GOCACHE", dir.join("gocache"))
            .env("GOFLAGS", "-buildvcs=false -mod=mod")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0");
        run(&mut c)
    };
    let version = go(&["env", "GOVERSION"]).trim().to_owned();
    go(&["build", "-o", "app", "."]);
    go(&["build", "-ldflags=-s -w", "-o", "app-stripped", "."]);
    let app = std::fs::read(dir.join("app")).unwrap();
    let stripped = std::fs::read(dir.join("app-stripped")).unwrap();
    let tar = Layer::new()
        .file("etc/os-release", OS_RELEASE_BOOKWORM)
        .file_mode("usr/local/bin/app", 0o755, &app)
        .file_mode("usr/local/bin/app-stripped", 0o755, &stripped)
        // Not executable: not read.
        .file("usr/share/app-copy", &app)
        .tar();
    let inv = scan(&tar);
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    for path in ["usr/local/bin/app", "usr/local/bin/app-stripped"] {
        let found: Vec<(&str, &str, &Ecosystem)> = inv
            .packages
            .iter()
            .filter(|p| p.path == path)
            .map(|p| (p.name.as_str(), p.version.as_str(), &p.ecosystem))
            .collect();
        assert_eq!(
            found,
            [
                ("stdlib", version.as_str(), &Ecosystem::Go),
                ("example.com/berthtest", "(devel)", &Ecosystem::Go),
            ],
            "{path}"
        );
    }
    let stdlib = by_name(&inv, "stdlib");
    assert_eq!(stdlib.purl, format!("pkg:golang/stdlib@{version}"));
    assert_eq!(stdlib.layer.as_deref(), Some(L1));
    eprintln!("go binary: {version}, {} bytes", app.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cargo-auditable` from `BERTH_CARGO_AUDITABLE`, PATH, or where
/// scripts/install-test-deps puts it.
fn cargo_auditable() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_CARGO_AUDITABLE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/opt/berth-test-deps/bin")])
        .map(|d| d.join("cargo-auditable"))
        .find(|p| p.is_file())
}

/// The version of `name` this workspace's Cargo.lock pins, so that the
/// test crate builds offline from the local registry cache.
fn locked_version(name: &str) -> String {
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
    let at = lock.find(&format!("name = \"{name}\"\n")).unwrap();
    let rest = &lock[at..];
    let v = rest.split("version = \"").nth(1).unwrap();
    v[..v.find('"').unwrap()].to_owned()
}

#[test]
fn rust_binary_built_by_cargo_auditable() {
    let Some(auditable) = cargo_auditable() else {
        eprintln!("SKIP rust_binary_built_by_cargo_auditable: cargo-auditable is not installed (cargo install cargo-auditable --locked)");
        return;
    };
    let dir = temp_dir("auditable");
    let itoa = locked_version("itoa");
    std::fs::create_dir_all(dir.join("app/src")).unwrap();
    std::fs::create_dir_all(dir.join("helper/src")).unwrap();
    std::fs::write(
        dir.join("app/Cargo.toml"),
        format!("[package]\nname = \"berth-audit-app\"\nversion = \"0.3.0\"\nedition = \"2021\"\n\n[dependencies]\nhelper = {{ path = \"../helper\" }}\nitoa = \"={itoa}\"\n\n[workspace]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("app/src/main.rs"),
        "fn main() { println!(\"{} {}\", helper::two(), itoa::Buffer::new().format(42)); }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("helper/Cargo.toml"),
        "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("helper/src/lib.rs"), "pub fn two() -> u32 { 2 }\n").unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let path = std::env::join_paths([auditable.parent().unwrap().to_owned()].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    run(Command::new(&cargo)
        .args(["auditable", "build", "--offline", "--quiet"])
        .current_dir(dir.join("app"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS"));
    let bin = std::fs::read(dir.join("target/debug/berth-audit-app")).unwrap();
    let lock = std::fs::read(dir.join("app/Cargo.lock")).unwrap();
    let tar = Layer::new()
        .file_mode("usr/local/bin/berth-audit-app", 0o755, &bin)
        .file("src/app/Cargo.lock", &lock)
        .tar();
    let inv = scan(&tar);
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    // The path dependency and the crate itself are local: only itoa is a
    // crates.io package, in the binary and in the lock file alike.
    let found: Vec<(&str, &str, &str, &Ecosystem)> = inv
        .packages
        .iter()
        .map(|p| {
            (
                p.path.as_str(),
                p.name.as_str(),
                p.version.as_str(),
                &p.ecosystem,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "src/app/Cargo.lock",
                "itoa",
                itoa.as_str(),
                &Ecosystem::CratesIo
            ),
            (
                "usr/local/bin/berth-audit-app",
                "itoa",
                itoa.as_str(),
                &Ecosystem::CratesIo
            ),
        ]
    );
    assert_eq!(inv.packages[0].purl, format!("pkg:cargo/itoa@{itoa}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rpmdb_written_by_rpm() {
    if !on_path("rpmbuild") || !on_path("rpm") {
        eprintln!("SKIP rpmdb_written_by_rpm: rpm and rpmbuild are not on PATH (Debian: apt-get install rpm)");
        return;
    }
    let dir = temp_dir("rpm");
    let spec = dir.join("berth-test.spec");
    std::fs::write(
        &spec,
        "Name: berth-test\nVersion: 1.2.3\nRelease: 4.el9\nEpoch: 2\nSummary: A test package\nLicense: MIT\nBuildArch: noarch\n\n%description\nA package for Berth's rpmdb test.\n\n%files\n",
    )
    .unwrap();
    let topdir = dir.join("rpmbuild");
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", topdir.display()))
        .arg(&spec));
    let rpmfile = topdir.join("RPMS/noarch/berth-test-1.2.3-4.el9.noarch.rpm");
    let db = dir.join("db");
    let rpm = |args: &[&str]| {
        let mut c = Command::new("rpm");
        c.arg("--dbpath")
            .arg(&db)
            .args(["--define", "_db_backend sqlite"])
            .args(args);
        run(&mut c)
    };
    rpm(&["--initdb"]);
    rpm(&[
        "-i",
        "--justdb",
        "--nodeps",
        "--noscripts",
        "--notriggers",
        "--ignorearch",
        "--ignoreos",
        rpmfile.to_str().unwrap(),
    ]);
    assert_eq!(
        rpm(&["-q", "berth-test"]).trim(),
        "berth-test-1.2.3-4.el9.noarch"
    );
    let sqlite = std::fs::read(db.join("rpmdb.sqlite")).unwrap();
    let tar = Layer::new()
        .file(
            "etc/os-release",
            b"NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
        )
        .file("var/lib/rpm/rpmdb.sqlite", &sqlite)
        .tar();
    let inv = scan(&tar);
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    assert_eq!(inv.packages.len(), 1);
    let p = &inv.packages[0];
    assert_eq!(
        (
            p.name.as_str(),
            p.version.as_str(),
            p.source_name.as_deref()
        ),
        ("berth-test", "2:1.2.3-4.el9", Some("berth-test"))
    );
    assert_eq!(
        p.ecosystem,
        Ecosystem::Rpm {
            distro: "Rocky Linux".into(),
            release: "9".into()
        }
    );
    assert_eq!(
        p.purl,
        "pkg:rpm/rocky/berth-test@1.2.3-4.el9?arch=noarch&distro=rocky-9.3&epoch=2"
    );

    // The same database as a BDB-era path, and a corrupt copy.
    let mut corrupt = sqlite.clone();
    let half = corrupt.len() / 2;
    corrupt.truncate(half);
    let inv = scan(
        &Layer::new()
            .file("var/lib/rpm/Packages", b"\x00\x06\x15\x61 berkeley")
            .file("usr/lib/sysimage/rpm/rpmdb.sqlite", &corrupt)
            .tar(),
    );
    assert!(inv.packages.is_empty());
    assert_eq!(inv.problems.len(), 1, "{:?}", inv.problems);
    assert_eq!(inv.problems[0].path, "usr/lib/sysimage/rpm/rpmdb.sqlite");
    let inv = scan(
        &Layer::new()
            .file("var/lib/rpm/Packages", b"\x00\x06\x15\x61")
            .tar(),
    );
    assert!(
        inv.problems[0].reason.contains("Berkeley DB"),
        "{:?}",
        inv.problems
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn pom(group: &str, artifact: &str, version: &str) -> Vec<u8> {
    format!("#Generated by Maven\n#Mon Jan 01 00:00:00 UTC 2024\nversion={version}\ngroupId={group}\nartifactId={artifact}\n").into_bytes()
}

#[test]
fn jars_nested_in_jars() {
    let deepest = zip(&[(
        "META-INF/maven/org.deep/deepest/pom.properties",
        &pom("org.deep", "deepest", "9"),
    )]);
    let inner = zip(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
        (
            "META-INF/maven/com.fasterxml.jackson.core/jackson-databind/pom.properties",
            &pom("com.fasterxml.jackson.core", "jackson-databind", "2.9.10"),
        ),
        (
            "com/fasterxml/jackson/databind/ObjectMapper.class",
            &[0xca, 0xfe, 0xba, 0xbe],
        ),
    ]);
    let middle = zip(&[
        (
            "META-INF/maven/org.example/middle/pom.properties",
            &pom("org.example", "middle", "1.0"),
        ),
        ("lib/deepest.jar", &deepest),
    ]);
    let app = zip(&[
        (
            "META-INF/maven/com.example/app/pom.properties",
            &pom("com.example", "app", "0.0.1-SNAPSHOT"),
        ),
        ("META-INF/maven/com.example/app/pom.xml", b"<project/>"),
        ("BOOT-INF/lib/jackson-databind-2.9.10.jar", &inner),
        ("BOOT-INF/lib/middle.jar", &middle),
        ("BOOT-INF/lib/not-a-jar.jar", b"text"),
    ]);
    let inv = scan(&Layer::new().file("opt/app/app.jar", &app).tar());
    let found: Vec<(&str, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("com.example:app", "0.0.1-SNAPSHOT", "opt/app/app.jar!/META-INF/maven/com.example/app/pom.properties"),
            (
                "com.fasterxml.jackson.core:jackson-databind",
                "2.9.10",
                "opt/app/app.jar!/BOOT-INF/lib/jackson-databind-2.9.10.jar!/META-INF/maven/com.fasterxml.jackson.core/jackson-databind/pom.properties"
            ),
            ("org.example:middle", "1.0", "opt/app/app.jar!/BOOT-INF/lib/middle.jar!/META-INF/maven/org.example/middle/pom.properties"),
            (
                "org.deep:deepest",
                "9",
                "opt/app/app.jar!/BOOT-INF/lib/middle.jar!/lib/deepest.jar!/META-INF/maven/org.deep/deepest/pom.properties"
            ),
        ]
    );
    assert!(inv.packages.iter().all(|p| p.ecosystem == Ecosystem::Maven));
    assert_eq!(
        inv.packages[1].purl,
        "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.10"
    );
    // The text file named .jar is a note, not a failure of the archive.
    assert_eq!(inv.problems.len(), 1, "{:?}", inv.problems);
    assert!(inv.problems[0]
        .reason
        .contains("not-a-jar.jar: not a zip archive"));

    // Two deep at most: the deepest jar is noted, not read.
    let limits = Limits {
        max_archive_depth: 2,
        ..Limits::default()
    };
    let layers = [walk_layer(&Layer::new().file("app.war", &app).tar()[..], L1, &limits).unwrap()];
    let inv = inventory(&merge(&layers));
    assert!(!inv.packages.iter().any(|p| p.name == "org.deep:deepest"));
    assert!(
        inv.problems
            .iter()
            .any(|p| p.reason.contains("deepest.jar: nested deeper than 2")),
        "{:?}",
        inv.problems
    );
}

/// A minimal 64-bit little-endian ELF executable holding a Go 1.17-style
/// build info (the pointer format, which no installed Go writes any more):
/// one PT_LOAD segment, no section headers, so the header is found at the
/// start of the writable segment as Go's own reader finds it.
fn go117_elf() -> Vec<u8> {
    let base = 0x400000u64;
    let mut f = vec![0u8; 0x200];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
                                                    // PT_LOAD, RW, the whole file at `base`.
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    f[ph + 4..ph + 8].copy_from_slice(&6u32.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&base.to_le_bytes());
    // Build info at 0x100: magic, pointer size 8, flags 0 (little-endian,
    // pointers), then the addresses of two Go string headers.
    let bi = 0x100;
    f[bi..bi + 14].copy_from_slice(b"\xff Go buildinf:");
    f[bi + 14] = 8;
    f[bi + 15] = 0;
    let (vers_hdr, mod_hdr, vers, modinfo) = (0x140usize, 0x150usize, 0x160usize, 0x170usize);
    f[bi + 16..bi + 24].copy_from_slice(&(base + vers_hdr as u64).to_le_bytes());
    f[bi + 24..bi + 32].copy_from_slice(&(base + mod_hdr as u64).to_le_bytes());
    let version = b"go1.17.13";
    let mut info = b"0123456789abcdef".to_vec();
    info.extend_from_slice(b"path\texample.com/old\nmod\texample.com/old\tv1.4.0\th1:a=\ndep\tgolang.org/x/net\tv0.0.0-20211112202133-69e39bad7dc2\th1:b=\n");
    info.extend_from_slice(b"\n123456789abcdef");
    for (hdr, at, len) in [
        (vers_hdr, vers, version.len()),
        (mod_hdr, modinfo, info.len()),
    ] {
        f[hdr..hdr + 8].copy_from_slice(&(base + at as u64).to_le_bytes());
        f[hdr + 8..hdr + 16].copy_from_slice(&(len as u64).to_le_bytes());
    }
    f[vers..vers + version.len()].copy_from_slice(version);
    f.resize(modinfo + info.len(), 0);
    f[modinfo..].copy_from_slice(&info);
    let size = f.len() as u64;
    f[ph + 32..ph + 40].copy_from_slice(&size.to_le_bytes()); // p_filesz
    f[ph + 40..ph + 48].copy_from_slice(&size.to_le_bytes()); // p_memsz
    f
}

#[test]
fn go_build_info_in_the_pre_1_18_pointer_format() {
    let inv = scan(
        &Layer::new()
            .file_mode("usr/bin/old", 0o755, &go117_elf())
            .tar(),
    );
    let found: Vec<(&str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("stdlib", "go1.17.13"),
            ("example.com/old", "v1.4.0"),
            ("golang.org/x/net", "v0.0.0-20211112202133-69e39bad7dc2"),
        ]
    );
    // Pointers that lead outside the file are a problem, not a panic.
    let mut bad = go117_elf();
    bad[0x110..0x118].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    let inv = scan(&Layer::new().file_mode("usr/bin/bad", 0o755, &bad).tar());
    assert!(inv.packages.is_empty());
    assert!(
        inv.problems[0]
            .reason
            .contains("pointers outside the binary"),
        "{:?}",
        inv.problems
    );
}

/// The crate's tests run from its directory; vulndata sits beside the
/// work tree.
fn vulndata() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vulndata/go/osv"
    ));
    dir.is_dir().then(|| dir.to_owned())
}

#[test]
fn an_old_go_toolchain_matches_go_advisories() {
    let Some(dir) = vulndata() else {
        eprintln!("SKIP an_old_go_toolchain_matches_go_advisories: shared/vulndata is absent");
        return;
    };
    let files = std::fs::read_dir(&dir).unwrap().map(|e| {
        let p = e.unwrap().path();
        (p.display().to_string(), std::fs::read(&p).unwrap())
    });
    let index = berth_scan::vulndb::Index::build(files).unwrap();
    let inv = scan(
        &Layer::new()
            .file_mode("usr/bin/old", 0o755, &go117_elf())
            .tar(),
    );
    let m = berth_scan::matcher::match_packages(&index, &inv.packages);
    assert!(
        m.findings
            .iter()
            .any(|f| f.package == "stdlib" && f.id.starts_with("GO-")),
        "{m:?}"
    );
    assert!(m
        .findings
        .iter()
        .all(|f| f.path == "usr/bin/old" && f.layer.as_deref() == Some(L1)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// A damaged ELF file (headers, pointers, lengths) is read as nothing
    /// or as a problem, never a panic.
    #[test]
    fn damaged_binaries_never_panic(
        flips in proptest::collection::vec((0usize..0x300, proptest::prelude::any::<u8>()), 1..6),
    ) {
        let mut elf = go117_elf();
        for (at, byte) in &flips {
            let i = at % elf.len();
            elf[i] = *byte;
        }
        let _ = scan(&Layer::new().file_mode("usr/bin/x", 0o755, &elf).tar());
    }
}
