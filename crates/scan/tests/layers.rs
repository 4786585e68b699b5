//! The layer walker, the merged view, the inventory and the composition
//! report on real tar layers (plain, gzip, zstd), hostile ones included.

mod common;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::time::Instant;

use berth_scan::composition::compose;
use berth_scan::layers::{self, merge, Compression, LayerError, LayerInventory, Limits};
use berth_scan::osv::Ecosystem;
use berth_scan::packages::{inventory, Evidence};
use common::*;

const L1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const L2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const L3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

const SITE: &str = "usr/lib/python3/dist-packages";

/// A base layer, an `apt-get install` + `pip uninstall` layer, and a
/// clean-up layer, as a Dockerfile would make them.
fn three_layers() -> Vec<LayerInventory> {
    let base = Layer::new()
        .dir("etc")
        .file("usr/lib/os-release", OS_RELEASE_BOOKWORM)
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file(
            "var/lib/dpkg/status",
            &status(&[
                ("libc6", "2.36-9+deb12u4", Some("glibc")),
                ("e2fsprogs", "1.47.0-2+b2", None),
            ]),
        )
        .file(
            &format!("{SITE}/requests-2.19.0.dist-info/METADATA"),
            &metadata("requests", "2.19.0"),
        )
        .file(
            &format!("{SITE}/requests-2.19.0.dist-info/RECORD"),
            b"requests/__init__.py,,\n",
        )
        .file(
            &format!("{SITE}/urllib3-1.24.1.dist-info/METADATA"),
            &metadata("urllib3", "1.24.1"),
        )
        .file(
            "opt/app/node_modules/left-pad/package.json",
            br#"{"name":"left-pad","version":"1.3.0"}"#,
        )
        .file("var/cache/apt/pkgcache.bin", &vec![7u8; 300_000])
        .tar();
    let install = Layer::new()
        .file(
            "var/lib/dpkg/status",
            &status(&[
                ("libc6", "2.36-9+deb12u4", Some("glibc")),
                ("e2fsprogs", "1.47.0-2+b2", None),
                ("curl", "7.88.1-10+deb12u5", None),
            ]),
        )
        .whiteout(&format!("{SITE}/requests-2.19.0.dist-info"))
        .opaque("opt/app")
        .file("opt/app/server.js", b"console.log('hi')\n")
        .file("var/cache/apt/pkgcache.bin", &vec![8u8; 400_000])
        .tar();
    let cleanup = Layer::new()
        .whiteout("var/cache/apt")
        .file(
            &format!("{SITE}/urllib3-1.24.1.dist-info/METADATA"),
            &metadata("urllib3", "1.24.1"),
        )
        .tar();
    vec![
        walk(&gzip(&base), L1),
        walk(&zstd(&install), L2),
        walk(&cleanup, L3),
    ]
}

#[test]
fn later_layers_delete_and_replace_what_earlier_ones_installed() {
    let layers = three_layers();
    assert_eq!(
        layers.iter().map(|l| l.compression).collect::<Vec<_>>(),
        [Compression::Gzip, Compression::Zstd, Compression::None]
    );
    let image = merge(&layers);
    let inv = inventory(&image);
    assert_eq!(inv.os.as_ref().unwrap().id, "debian");
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);

    let got: BTreeMap<&str, (&str, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                (
                    p.version.as_str(),
                    p.layer.as_deref().unwrap(),
                    p.path.as_str(),
                ),
            )
        })
        .collect();
    // requests was deleted by a whiteout of its directory, left-pad by the
    // opaque directory: neither is reported.
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        ["curl", "e2fsprogs", "libc6", "urllib3"]
    );
    // The status file is in layer 2 now, but libc6 and e2fsprogs came with
    // layer 1; urllib3's METADATA was rewritten unchanged in layer 3.
    assert_eq!(got["libc6"].1, L1);
    assert_eq!(got["e2fsprogs"].1, L1);
    assert_eq!(got["curl"].1, L2);
    assert_eq!(got["urllib3"].1, L1);
    assert_eq!(got["curl"].2, "var/lib/dpkg/status");

    let libc6 = inv.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(
        libc6.ecosystem,
        Ecosystem::Debian {
            release: "12".into()
        }
    );
    assert_eq!(libc6.source_name.as_deref(), Some("glibc"));
    assert_eq!(
        libc6.purl,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
    );
    let e2fs = inv.packages.iter().find(|p| p.name == "e2fsprogs").unwrap();
    assert_eq!(e2fs.source_version.as_deref(), Some("1.47.0-2"));
    let urllib3 = inv.packages.iter().find(|p| p.name == "urllib3").unwrap();
    assert_eq!(urllib3.purl, "pkg:pypi/urllib3@1.24.1");
}

#[test]
fn composition_counts_what_later_layers_hide() {
    let layers = three_layers();
    let c = compose(&merge(&layers));
    assert_eq!(c.layers.len(), 3);
    assert_eq!(c.layers[0].digest, L1);
    for (summary, layer) in c.layers.iter().zip(&layers) {
        assert_eq!(summary.uncompressed_bytes, layer.uncompressed_bytes);
        assert_eq!(summary.compressed_bytes, layer.compressed_bytes);
        assert_eq!(summary.uncompressed_bytes % 512, 0);
    }
    // Plain tar: the blob is the tar stream.
    assert_eq!(c.layers[2].compressed_bytes, c.layers[2].uncompressed_bytes);
    assert!(c.layers[0].compressed_bytes < c.layers[0].uncompressed_bytes);
    assert_eq!(c.layers[0].files, 7);

    // Layer 1's apt cache (300,000 bytes) was overwritten by layer 2's,
    // which layer 3 deleted (400,000); the status file, requests' two
    // files, left-pad's manifest and urllib3's metadata make up the rest.
    let biggest = &c.largest_waste[0];
    assert_eq!(
        (
            biggest.path.as_str(),
            biggest.size,
            biggest.layer.as_str(),
            biggest.by.as_str(),
            biggest.deleted
        ),
        ("var/cache/apt/pkgcache.bin", 400_000, L2, L3, true)
    );
    let second = &c.largest_waste[1];
    assert_eq!(
        (
            second.size,
            second.layer.as_str(),
            second.by.as_str(),
            second.deleted
        ),
        (300_000, L1, L2, false)
    );
    let paths: Vec<&str> = c.largest_waste.iter().map(|w| w.path.as_str()).collect();
    for p in [
        "var/lib/dpkg/status",
        "opt/app/node_modules/left-pad/package.json",
        "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/RECORD",
        "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA",
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
    assert_eq!(c.wasted_files, 7);
    assert_eq!(
        c.wasted_bytes,
        c.largest_waste.iter().map(|w| w.size).sum::<u64>()
    );
    assert_eq!(
        c.layers[0].wasted_bytes + c.layers[1].wasted_bytes + c.layers[2].wasted_bytes,
        c.wasted_bytes
    );
    assert_eq!(c.layers[2].wasted_bytes, 0);
}

#[test]
fn cached_layer_inventories_merge_to_the_same_image() {
    let layers = three_layers();
    // What a cache would store and give back, one layer at a time.
    let reloaded: Vec<LayerInventory> = layers
        .iter()
        .map(|l| serde_json::from_slice(&serde_json::to_vec(l).unwrap()).unwrap())
        .collect();
    assert_eq!(reloaded, layers);
    assert_eq!(inventory(&merge(&reloaded)), inventory(&merge(&layers)));
    assert_eq!(compose(&merge(&reloaded)), compose(&merge(&layers)));
    assert!(reloaded.iter().all(|l| l.format == layers::FORMAT));
    // The base layer alone is an image of its own (the base image).
    let base = inventory(&merge(&layers[..1]));
    let names: Vec<&str> = base.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["left-pad", "requests", "urllib3", "libc6", "e2fsprogs"]
    );
}

#[test]
fn the_same_tar_plain_gzip_or_zstd_gives_the_same_inventory() {
    let tar = three_layers_base_tar();
    let plain = walk(&tar, L1);
    for compressed in [gzip(&tar), zstd(&tar)] {
        let mut l = walk(&compressed, L1);
        assert_ne!(l.compression, Compression::None);
        assert_eq!(l.uncompressed_bytes, tar.len() as u64);
        assert_eq!(l.compressed_bytes, compressed.len() as u64);
        l.compression = Compression::None;
        l.compressed_bytes = plain.compressed_bytes;
        assert_eq!(l, plain);
    }
    // Several gzip members and several zstd frames (pigz, zstd:chunked) are
    // one stream.
    let (a, b) = tar.split_at(tar.len() / 3);
    let mut multi = gzip(a);
    multi.extend(gzip(b));
    assert_eq!(walk(&multi, L1).evidence, plain.evidence);
    let mut frames = zstd(a);
    frames.extend(zstd(b));
    assert_eq!(walk(&frames, L1).evidence, plain.evidence);
}

fn three_layers_base_tar() -> Vec<u8> {
    Layer::new()
        .file("etc/os-release", OS_RELEASE_BOOKWORM)
        .file(
            "var/lib/dpkg/status",
            &status(&[("libc6", "2.36-9+deb12u4", Some("glibc"))]),
        )
        .file("var/lib/x", &vec![1u8; 100_000])
        .tar()
}

#[test]
fn symlinks_resolve_inside_the_image_only() {
    let lower = walk(
        &Layer::new()
            .file("usr/lib/os-release", b"ID=alpine\nVERSION_ID=3.18.4\n")
            .file(
                "lib/apk/db/installed",
                b"P:libcrypto3\nV:3.1.4-r0\nA:x86_64\no:openssl\n\n",
            )
            .tar(),
        L1,
    );
    // The link is in a later layer than its target, and absolute.
    let upper = walk(
        &Layer::new()
            .symlink("etc/os-release", "/usr/lib/os-release")
            .symlink("etc/escape", "../../../../../etc/passwd")
            .symlink("etc/abs-escape", "/../../etc/passwd")
            .symlink("etc/loop-a", "loop-b")
            .symlink("etc/loop-b", "loop-a")
            .symlink("usr/lib64", "lib")
            .tar(),
        L2,
    );
    let layers = [lower, upper];
    let image = merge(&layers);
    assert_eq!(
        image.resolve("etc/os-release").as_deref(),
        Some("usr/lib/os-release")
    );
    assert_eq!(
        image.resolve("usr/lib64/os-release").as_deref(),
        Some("usr/lib/os-release")
    );
    // `..` stops at the image root, as in the container.
    assert_eq!(image.resolve("etc/escape").as_deref(), Some("etc/passwd"));
    assert_eq!(
        image.resolve("etc/abs-escape").as_deref(),
        Some("etc/passwd")
    );
    assert_eq!(image.resolve("etc/loop-a"), None);

    let inv = inventory(&image);
    let p = &inv.packages[0];
    assert_eq!(
        p.ecosystem,
        Ecosystem::Alpine {
            branch: "v3.18".into()
        }
    );
    assert_eq!(p.source_name.as_deref(), Some("openssl"));
    assert_eq!(
        p.purl,
        "pkg:apk/alpine/libcrypto3@3.1.4-r0?arch=x86_64&distro=alpine-3.18.4&upstream=openssl"
    );
    assert_eq!(p.layer.as_deref(), Some(L1));
}

#[test]
fn dotdot_paths_fail_the_layer_and_inner_dotdots_are_normalised() {
    let tar = Layer::new()
        .file("etc/os-release", OS_RELEASE_BOOKWORM)
        .raw_name(b"../../etc/cron.d/evil", b"* * * * * root sh\n")
        .tar();
    let e = layers::walk_layer(&gzip(&tar)[..], L1, &Limits::default()).unwrap_err();
    assert_eq!(
        e,
        LayerError::PathEscapes {
            path: "../../etc/cron.d/evil".into()
        }
    );
    assert!(
        e.to_string().contains("climbs out of the image root"),
        "{e}"
    );

    let tar = Layer::new()
        .raw_name(
            b"./usr/share/../../var/lib/dpkg/status",
            &status(&[("a", "1", None)]),
        )
        .raw_name(b"/etc/os-release", OS_RELEASE_BOOKWORM)
        .tar();
    let l = walk(&tar, L1);
    let paths: Vec<&str> = l.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["var/lib/dpkg/status", "etc/os-release"]);
    assert_eq!(inventory(&merge(&[l])).packages.len(), 1);
}

/// A GNU sparse entry of `real` logical bytes, one 512-byte chunk stored
/// at its end; with `extended`, the map continues in an extension block.
fn sparse(path: &str, real: u64, extended: bool) -> (tar::Header, Vec<u8>) {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o755);
    h.set_size(512);
    let g = h.as_gnu_mut().unwrap();
    g.set_real_size(real);
    g.sparse[0].set_offset(real - 512);
    g.sparse[0].set_length(512);
    let mut data = Vec::new();
    if extended {
        g.isextended[0] = 1;
        let mut ext = [0u8; 512];
        ext[504] = 0; // no further extension blocks
        data.extend_from_slice(&ext);
    }
    h.set_cksum();
    data.extend_from_slice(&[b'x'; 512]);
    (h, data)
}

#[test]
fn a_10_gib_sparse_file_is_not_materialised() {
    const TEN_GIB: u64 = 10 << 30;
    let (status_h, status_d) = sparse("var/lib/dpkg/status", TEN_GIB, false);
    let (bin_h, bin_d) = sparse("usr/bin/huge", TEN_GIB, true);
    let tar = Layer::new()
        .file("etc/os-release", OS_RELEASE_BOOKWORM)
        .raw(&status_h, &status_d)
        .raw(&bin_h, &bin_d)
        .file(
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            &metadata("six", "1.16.0"),
        )
        .tar();
    let start = Instant::now();
    let l = walk(&gzip(&tar), L1);
    assert!(
        start.elapsed().as_secs() < 5,
        "a sparse hole was read: {:?}",
        start.elapsed()
    );
    let six = metadata("six", "1.16.0");
    assert_eq!(
        l.file_bytes,
        2 * TEN_GIB + (OS_RELEASE_BOOKWORM.len() + six.len()) as u64
    );
    assert_eq!(l.uncompressed_bytes, tar.len() as u64);
    assert_eq!(l.skipped.len(), 1);
    let skipped = &l.skipped["var/lib/dpkg/status"];
    assert_eq!(skipped.size, TEN_GIB);
    assert!(skipped.reason.contains("sparse"));
    let inv = inventory(&merge(&[l]));
    assert_eq!(
        inv.packages.len(),
        1,
        "the entry after the sparse ones was read"
    );
    assert_eq!(inv.problems.len(), 1);
    assert!(
        inv.problems[0].reason.contains("sparse"),
        "{:?}",
        inv.problems
    );
}

#[test]
fn truncated_and_corrupt_layers_are_errors() {
    let tar = three_layers_base_tar();
    let gz = gzip(&tar);
    for cut in [gz.len() / 2, gz.len() - 4, 11] {
        let e = layers::walk_layer(&gz[..cut], L1, &Limits::default()).unwrap_err();
        assert!(
            matches!(e, LayerError::Read(_) | LayerError::Truncated { .. }),
            "cut at {cut}: {e:?}"
        );
    }
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    assert!(layers::walk_layer(&flipped[..], L1, &Limits::default()).is_err());

    let zs = zstd(&tar);
    let e = layers::walk_layer(&zs[..zs.len() - 3], L1, &Limits::default()).unwrap_err();
    assert!(
        matches!(e, LayerError::Read(_) | LayerError::Truncated { .. }),
        "{e:?}"
    );

    // A plain tar cut inside an entry, and bytes that are no tar at all.
    let e = layers::walk_layer(&tar[..tar.len() / 2], L1, &Limits::default()).unwrap_err();
    assert!(matches!(e, LayerError::Truncated { .. }), "{e:?}");
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let e = layers::walk_layer(&junk[..], L1, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    for (magic, what) in [(&b"BZh91AY&SY"[..], "bzip2"), (b"\xfd7zXZ\0\0", "xz")] {
        let e = layers::walk_layer(magic, L1, &Limits::default()).unwrap_err();
        assert_eq!(e, LayerError::Unsupported(format!("{what} compression")));
    }
    // An empty blob is an empty layer.
    assert!(walk(&[], L1).entries.is_empty());
}

#[test]
fn a_gzip_bomb_ends_at_the_layer_limit() {
    let limits = Limits {
        max_layer_bytes: 64 << 20,
        ..Limits::default()
    };
    // 256 MiB of zeros, 256 KiB compressed, generated as a stream.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut b = tar::Builder::new(&mut e);
        let mut h = tar::Header::new_gnu();
        h.set_size(256 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "zeros", io::repeat(0).take(256 << 20))
            .unwrap();
        b.finish().unwrap();
        drop(b);
        e.finish().unwrap()
    };
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    // The entry declares its size: refused before a byte of it is read.
    let e = layers::walk_layer(&bomb[..], L1, &limits).unwrap_err();
    assert_eq!(e, LayerError::TooLarge { limit: 64 << 20 });
    assert!(e
        .to_string()
        .contains("over the limit of 67108864 uncompressed bytes"));

    // Zeros after the end of the archive are counted too.
    let mut tail = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let small = Layer::new().file("a", b"x").tar();
    std::io::Write::write_all(&mut tail, &small).unwrap();
    io::copy(&mut io::repeat(0).take(100 << 20), &mut tail).unwrap();
    let tail = tail.finish().unwrap();
    let e = layers::walk_layer(&tail[..], L1, &limits).unwrap_err();
    assert_eq!(e, LayerError::TooLarge { limit: 64 << 20 });
}

#[test]
fn a_malformed_database_is_a_problem_and_the_rest_is_read() {
    let tar = Layer::new()
        .file("etc/os-release", OS_RELEASE_BOOKWORM)
        .file(
            "var/lib/dpkg/status",
            b"Package: libc6\nStatus: install ok installed\n\x00\x01garbage line\n",
        )
        .file(
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            &metadata("six", "1.16.0"),
        )
        .file("app/node_modules/broken/package.json", b"{\"name\": ")
        .file("app/app.jar", b"PK\x03\x04 truncated")
        .tar();
    let layers = [walk(&tar, L1)];
    let inv = inventory(&merge(&layers));
    assert_eq!(inv.packages.len(), 1);
    assert_eq!(inv.packages[0].name, "six");
    let problems: Vec<(&str, &str)> = inv
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].0, "app/app.jar");
    assert!(problems[0].1.contains("not a zip archive"), "{problems:?}");
    assert_eq!(problems[1].0, "app/node_modules/broken/package.json");
    assert_eq!(problems[2].0, "var/lib/dpkg/status");
    assert!(
        problems[2].1.contains("line 3: not a field"),
        "{problems:?}"
    );
    assert!(inv.problems.iter().all(|p| p.layer.as_deref() == Some(L1)));
}

#[test]
fn hard_limits_are_errors_with_their_reason() {
    let many = Layer::new()
        .file("a", b"1")
        .file("b", b"2")
        .file("c", b"3")
        .tar();
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    assert_eq!(
        layers::walk_layer(&many[..], L1, &limits).unwrap_err(),
        LayerError::TooManyEntries { limit: 2 }
    );

    let long = format!("{}/file", "d".repeat(5000));
    let tar = Layer::new().file(&long, b"x").tar();
    let e = layers::walk_layer(&tar[..], L1, &Limits::default()).unwrap_err();
    assert!(
        matches!(e, LayerError::PathTooLong { limit: 4096, .. }),
        "{e:?}"
    );

    // A pax header claiming 100 MiB: refused, not allocated.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(100 << 20);
    h.set_cksum();
    let tar = Layer::new().raw(&h, b"").tar();
    let e = layers::walk_layer(&tar[..], L1, &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("pax header of 104857600 bytes"),
        "{e}"
    );

    // A wanted file over the size limit is skipped and reported.
    let limits = Limits {
        max_file_size: 1000,
        ..Limits::default()
    };
    let big = status(&(0..50).map(|_| ("p", "1", None)).collect::<Vec<_>>());
    let tar = Layer::new().file("var/lib/dpkg/status", &big).tar();
    let l = layers::walk_layer(&tar[..], L1, &limits).unwrap();
    assert!(l.evidence.is_empty());
    let skipped = &l.skipped["var/lib/dpkg/status"];
    assert_eq!(skipped.size, big.len() as u64);
    assert!(skipped.reason.contains("over the 1000-byte limit"));
}

#[test]
fn pax_and_gnu_long_names_and_hardlinks() {
    let deep = format!(
        "usr/lib/python3/dist-packages/{}/pkg-1.0.dist-info/METADATA",
        "x".repeat(150)
    );
    // The Builder writes a GNU long-name entry for this path; a pax header
    // is written by hand.
    let pax_path = format!("opt/{}/node_modules/lodash/package.json", "y".repeat(120));
    let record = format!("path={pax_path}\n");
    // The length counts its own digits.
    let mut len = record.len() + 2;
    while len != record.len() + 1 + len.to_string().len() {
        len = record.len() + 1 + len.to_string().len();
    }
    let pax = format!("{len} {record}");
    let mut xh = tar::Header::new_ustar();
    xh.set_entry_type(tar::EntryType::XHeader);
    xh.set_size(pax.len() as u64);
    xh.set_cksum();
    let manifest = br#"{"name":"lodash","version":"4.17.20"}"#;
    let mut fh = tar::Header::new_ustar();
    fh.set_path("placeholder").unwrap();
    fh.set_size(manifest.len() as u64);
    fh.set_mode(0o644);
    fh.set_cksum();
    let tar = Layer::new()
        .file(&deep, &metadata("pkg", "1.0"))
        .raw(&xh, pax.as_bytes())
        .raw(&fh, manifest)
        .hardlink("usr/lib/python3/dist-packages/pkg-copy.egg-info", &deep)
        .tar();
    let l = walk(&tar, L1);
    assert!(l.evidence.contains_key(&deep));
    assert!(
        l.evidence.contains_key(&pax_path),
        "{:?}",
        l.evidence.keys()
    );
    assert!(!l.entries.iter().any(|e| e.path == "placeholder"));
    let copy = &l.evidence["usr/lib/python3/dist-packages/pkg-copy.egg-info"];
    assert!(matches!(copy, Evidence::Packages { packages, .. } if packages[0].name == "pkg"));
}

#[test]
fn a_declared_size_near_2_pow_64_is_refused_not_overflowed() {
    for (kind, size) in [
        (tar::EntryType::Regular, u64::MAX),
        (tar::EntryType::Regular, u64::MAX - 100),
        (tar::EntryType::GNUSparse, u64::MAX),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path("var/lib/dpkg/status").unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        // Base-256, as GNU tar writes sizes that octal cannot hold.
        h.as_gnu_mut().unwrap().size = {
            let mut f = [0u8; 12];
            f[0] = 0x80;
            f[4..].copy_from_slice(&size.to_be_bytes());
            f
        };
        if kind == tar::EntryType::GNUSparse {
            h.as_gnu_mut().unwrap().set_real_size(u64::MAX);
        }
        h.set_cksum();
        let tar = Layer::new().raw(&h, b"").tar();
        let e = layers::walk_layer(&tar[..], L1, &Limits::default()).unwrap_err();
        assert_eq!(
            e,
            LayerError::TooLarge { limit: 16 << 30 },
            "{kind:?} {size}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Whatever bytes of a layer's first headers are damaged, the walk
    /// gives a value or an error, never a panic; nor does the rest of the
    /// scan of what it gives.
    #[test]
    fn damaged_layers_never_panic(
        flips in proptest::collection::vec((0usize..3072, proptest::prelude::any::<u8>()), 1..8),
        compress in 0u8..3,
    ) {
        let mut tar = three_layers_base_tar();
        for (at, byte) in &flips {
            let i = at % tar.len();
            tar[i] = *byte;
        }
        // Damaged headers get a valid checksum, so that the damage reaches
        // the parsing behind it.
        for block in tar[..3072].chunks_mut(512) {
            if &block[257..262] == b"ustar" {
                block[148..156].fill(b' ');
                let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
                block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            }
        }
        let layer = match compress {
            0 => tar,
            1 => gzip(&tar),
            _ => zstd(&tar),
        };
        if let Ok(l) = layers::walk_layer(&layer[..], L1, &Limits::default()) {
            let layers = [l];
            let image = merge(&layers);
            let _ = inventory(&image);
            let _ = compose(&image);
        }
    }
}

/// Found by tests/images.rs's question of Debian's own Python packages: a
/// language package in files dpkg installed is the Debian package's, not
/// reported again under its upstream name (Debian's python3-urllib3
/// 1.26.12-1+deb12u4 has PyPI's 1.26.12 metadata and Debian's fixes), also
/// where dpkg names the path through a merged-/usr symlink; one that pip
/// put beside it still is, and so is what a removed `.list` owned.
#[test]
fn language_packages_in_files_dpkg_installed_are_the_debian_packages() {
    let egg = "usr/lib/python3/dist-packages/urllib3-1.26.12.egg-info/PKG-INFO";
    let base = Layer::new()
        .file("usr/lib/os-release", OS_RELEASE_BOOKWORM)
        .symlink("etc/os-release", "../usr/lib/os-release")
        .symlink("lib", "usr/lib")
        .file(
            "var/lib/dpkg/status",
            &status(&[
                (
                    "python3-urllib3",
                    "1.26.12-1+deb12u4",
                    Some("python-urllib3"),
                ),
                ("python3-six", "1.16.0-4", Some("six")),
            ]),
        )
        .file(
            "var/lib/dpkg/info/python3-urllib3.list",
            format!("/.\n/usr\n/usr/lib\n/{egg}\n/usr/lib/python3/dist-packages/urllib3\n")
                .as_bytes(),
        )
        // Listed through the `lib` symlink.
        .file(
            "var/lib/dpkg/info/python3-six.list",
            b"/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO\n",
        )
        .file(egg, &metadata("urllib3", "1.26.12"))
        .file(
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO",
            &metadata("six", "1.16.0"),
        )
        .file(
            "usr/local/lib/python3.11/dist-packages/requests-2.19.0.dist-info/METADATA",
            &metadata("requests", "2.19.0"),
        )
        .tar();
    let layers = vec![walk(&base, L1)];
    let inv = inventory(&merge(&layers));
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    let mut got: Vec<(String, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.ecosystem.to_string(), p.name.as_str(), p.version.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("Debian:12".to_owned(), "python3-six", "1.16.0-4"),
            (
                "Debian:12".to_owned(),
                "python3-urllib3",
                "1.26.12-1+deb12u4"
            ),
            ("PyPI".to_owned(), "requests", "2.19.0"),
        ]
    );

    // dpkg -r python3-six (its .list gone, its files left by a careless
    // layer): the file is nobody's, so it is reported.
    let removed = Layer::new()
        .whiteout("var/lib/dpkg/info/python3-six.list")
        .tar();
    let layers = vec![walk(&base, L1), walk(&removed, L2)];
    let inv = inventory(&merge(&layers));
    assert!(inv
        .packages
        .iter()
        .any(|p| p.ecosystem == Ecosystem::PyPI && p.name == "six"));
    assert!(!inv
        .packages
        .iter()
        .any(|p| p.ecosystem == Ecosystem::PyPI && p.name == "urllib3"));
}
