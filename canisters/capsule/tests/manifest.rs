//! The manifest: the same content gives the same root whatever the order it was written in; any single
//! changed byte changes the root; the counts are right.

mod common;

use capsule::limits::*;
use capsule::service;
use capsule::types::*;
use common::*;
use rstest::rstest;

#[test]
fn counts_and_encoding() {
    let m = sample_manifest(Order::Straight, Mutation::None);
    assert_eq!(m.memories, 4);
    assert_eq!(m.inline_assets, 2);
    assert_eq!(m.inline_bytes, SAMPLE_INLINE_LEN as u64 + 4);
    assert_eq!(m.blobs, 1);
    assert_eq!(m.blob_bytes, SAMPLE_BLOB_LEN as u64);
    assert_eq!(m.connections, 3);
    assert_eq!(m.root.len(), 32);
    assert_eq!(m.root_hex, hex::encode(&m.root));
    assert_eq!(m.root_hex.len(), 64);
}

#[test]
fn the_manifest_is_deterministic() {
    assert_eq!(
        sample_manifest(Order::Straight, Mutation::None),
        sample_manifest(Order::Straight, Mutation::None)
    );
}

#[test]
fn same_content_in_another_order_gives_the_same_root() {
    let straight = sample_manifest(Order::Straight, Mutation::None);
    let shuffled = sample_manifest(Order::Shuffled, Mutation::None);
    assert_eq!(straight, shuffled);
}

#[test]
fn the_manifest_is_computed_from_the_store_without_side_effects() {
    build_sample(Order::Straight, Mutation::None);
    let before = fingerprint(owner());
    let m = capsule::manifest::of(owner()).unwrap();
    assert_eq!(capsule::manifest::of(owner()).unwrap(), m);
    assert_eq!(service::capsule_manifest(owner()).unwrap(), m);
    assert_eq!(fingerprint(owner()), before);
    assert_eq!(m, sample_manifest(Order::Straight, Mutation::None));
}

#[test]
fn an_empty_capsule_has_a_manifest() {
    let m = in_fresh_store(|| {
        service::capsule_create(owner(), T0, capsule_input("", "")).unwrap();
        capsule::manifest::of(owner()).unwrap()
    });
    assert_eq!(
        (
            m.memories,
            m.inline_assets,
            m.inline_bytes,
            m.blobs,
            m.blob_bytes,
            m.connections
        ),
        (0, 0, 0, 0, 0, 0)
    );
    assert_eq!(m.root.len(), 32);
    // The owner is part of the capsule's identity.
    let other = in_fresh_store(|| {
        service::capsule_create(stranger(), T0, capsule_input("", "")).unwrap();
        capsule::manifest::of(stranger()).unwrap()
    });
    assert_ne!(m.root, other.root);
}

#[rstest]
#[case::capsule_name(Mutation::CapsuleName)]
#[case::capsule_bio(Mutation::CapsuleBio)]
#[case::title(Mutation::Title)]
#[case::description(Mutation::Description)]
#[case::tag(Mutation::Tag)]
#[case::tag_order(Mutation::TagOrder)]
#[case::extra_tag(Mutation::ExtraTag)]
#[case::mime_type(Mutation::MimeType)]
#[case::kind(Mutation::Kind)]
#[case::inline_byte(Mutation::InlineByte)]
#[case::inline_length(Mutation::InlineLength)]
#[case::blob_byte_first_chunk(Mutation::BlobByteFirstChunk)]
#[case::blob_byte_last_chunk(Mutation::BlobByteLastChunk)]
#[case::memory_time(Mutation::MemoryTime)]
#[case::connection_status(Mutation::ConnectionStatus)]
#[case::connection_note(Mutation::ConnectionNote)]
#[case::connection_peer(Mutation::ConnectionPeer)]
#[case::connection_time(Mutation::ConnectionTime)]
#[case::missing_connection(Mutation::MissingConnection)]
#[case::extra_memory(Mutation::ExtraMemory)]
#[case::deleted_memory(Mutation::DeletedMemory)]
fn any_single_change_changes_the_root(
    #[case] mutation: Mutation,
    #[values(Order::Straight, Order::Shuffled)] order: Order,
) {
    let base = sample_manifest(Order::Straight, Mutation::None);
    let changed = sample_manifest(order, mutation);
    assert_ne!(
        changed.root, base.root,
        "{mutation:?} did not change the root"
    );
    assert_ne!(changed.root_hex, base.root_hex);
    // The counts move only when the shape changes.
    let mut expected = base.clone();
    match mutation {
        Mutation::InlineLength => expected.inline_bytes -= 1,
        Mutation::MissingConnection => expected.connections -= 1,
        Mutation::ExtraMemory => expected.memories += 1,
        _ => {}
    }
    expected.root = changed.root.clone();
    expected.root_hex = changed.root_hex.clone();
    assert_eq!(changed, expected);
    // And the change is seen the same way whatever the order.
    if order == Order::Shuffled {
        assert_eq!(changed, sample_manifest(Order::Straight, mutation));
    }
}

/// A memory's update is part of the manifest: updating a field and updating it back to its old value is
/// still a change (of `updated_at`), and the same update at the same time gives the same root.
#[test]
fn updates_and_their_time_are_in_the_manifest() {
    let run = |t: u64, title: &'static str| {
        in_fresh_store(move || {
            build_sample(Order::Straight, Mutation::None);
            service::memory_update(
                owner(),
                t,
                0,
                MemoryUpdate {
                    title: Some(title.into()),
                    ..Default::default()
                },
            )
            .unwrap();
            capsule::manifest::of(owner()).unwrap()
        })
    };
    let base = sample_manifest(Order::Straight, Mutation::None);
    assert_ne!(run(T0 + 1, "letter").root, base.root);
    assert_eq!(run(T0 + 1, "letter"), run(T0 + 1, "letter"));
    assert_ne!(run(T0 + 1, "letter").root, run(T0 + 2, "letter").root);
    assert_ne!(run(T0 + 1, "letter").root, run(T0 + 1, "letteR").root);
}

/// Any one byte of a multi-chunk blob changes the root, wherever it is.
#[rstest]
fn every_region_of_a_blob_counts(
    #[values(0, CHUNK_SIZE - 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 122)] at: usize,
) {
    let build = move |flip_at: Option<usize>| {
        in_fresh_store(move || {
            let mut bytes = pattern(2 * CHUNK_SIZE + 123, 21);
            if let Some(i) = flip_at {
                bytes[i] = bytes[i].wrapping_add(1);
            }
            service::capsule_create(owner(), T0, capsule_input("Ada", "")).unwrap();
            blob_memory(owner(), T0, "blob", &bytes);
            capsule::manifest::of(owner()).unwrap()
        })
    };
    let base = build(None);
    let changed = build(Some(at));
    assert_ne!(base.root, changed.root);
    assert_eq!(base.blob_bytes, changed.blob_bytes);
}
