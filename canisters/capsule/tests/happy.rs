//! Happy paths of the capsule API: capsule, inline and blob memories, uploads, pagination, connections.

mod common;

use capsule::error::ErrorKind;
use capsule::limits::*;
use capsule::service;
use capsule::store::{self, Region};
use capsule::types::*;
use common::*;
use ic_stable_structures::Memory as _;
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;

fn slot_pages() -> u64 {
    store::memory(Region::BlobSlots).size()
}

#[test]
fn create_get_and_update_a_capsule() {
    let a = owner();
    let created = service::capsule_create(a, T0, capsule_input("Ada", "Mathematician")).unwrap();
    assert_eq!(
        created,
        Capsule {
            owner: a,
            name: "Ada".into(),
            bio: "Mathematician".into(),
            created_at: T0,
            updated_at: T0,
            memory_count: 0,
            connection_count: 0,
            stored_bytes: 0,
            status: CapsuleStatus::Active,
        }
    );
    assert_eq!(service::capsule_get(a).unwrap(), created);
    assert!(service::has_capsule(a));
    assert_eq!(service::status_of(a), CapsuleStatus::Active);

    let updated = service::capsule_update(
        a,
        T0 + 5,
        CapsuleUpdate {
            name: None,
            bio: Some("Countess of Lovelace".into()),
        },
    )
    .unwrap();
    assert_eq!(updated.name, "Ada");
    assert_eq!(updated.bio, "Countess of Lovelace");
    assert_eq!((updated.created_at, updated.updated_at), (T0, T0 + 5));
    assert_eq!(service::capsule_get(a).unwrap(), updated);

    // Capsules are per owner: another user sees only their own.
    assert_eq!(
        kind_of(service::capsule_get(stranger())),
        ErrorKind::CapsuleNotFound
    );
    service::capsule_create(stranger(), T0, capsule_input("B", "")).unwrap();
    assert_eq!(service::capsule_get(stranger()).unwrap().name, "B");
    assert_eq!(service::capsule_get(a).unwrap(), updated);
}

#[test]
fn inline_memory_up_to_inline_max() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let bytes = pattern(INLINE_MAX, 3);
    let m = service::memory_create(
        a,
        T0 + 1,
        MemoryInput {
            title: "letter".into(),
            description: "to Babbage".into(),
            tags: vec!["engine".into()],
            kind: MemoryKind::Document,
            mime_type: "application/octet-stream".into(),
            asset: inline(&bytes),
        },
    )
    .unwrap();
    assert_eq!(m.id, 0);
    assert_eq!(
        m.asset,
        AssetInfo::Inline {
            len: INLINE_MAX as u64,
            sha256: ByteBuf::from(sha(&bytes))
        }
    );
    assert_eq!((m.created_at, m.updated_at), (T0 + 1, T0 + 1));
    let detail = service::memory_get(a, 0).unwrap();
    assert_eq!(detail.memory, m);
    assert_eq!(detail.inline_bytes.unwrap().into_vec(), bytes);
    let capsule = service::capsule_get(a).unwrap();
    assert_eq!(capsule.memory_count, 1);
    assert_eq!(capsule.stored_bytes, INLINE_MAX as u64);
    assert_eq!(capsule.updated_at, T0 + 1);

    // One byte more is refused and stores nothing.
    let before = fingerprint(a);
    assert_eq!(
        kind_of(service::memory_create(
            a,
            T0 + 2,
            memory_input("too big", inline(&pattern(INLINE_MAX + 1, 3)))
        )),
        ErrorKind::TooLong {
            field: "asset.inline".into(),
            max: INLINE_MAX as u64,
            actual: INLINE_MAX as u64 + 1
        }
    );
    assert_eq!(fingerprint(a), before);

    // A memory without an asset.
    let none = service::memory_create(a, T0 + 3, memory_input("note", AssetInput::None)).unwrap();
    assert_eq!(none.id, 1);
    assert_eq!(none.asset, AssetInfo::None);
    assert_eq!(service::memory_get(a, 1).unwrap().inline_bytes, None);
}

#[test]
fn blob_upload_of_several_chunks_reads_back_exactly() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let total = 2 * CHUNK_SIZE + 123;
    let bytes = pattern(total, 7);
    let session = service::upload_begin(
        a,
        T0,
        UploadBegin {
            total_len: total as u64,
        },
    )
    .unwrap();
    assert_eq!(session.chunk_count, 3);
    assert_eq!(session.chunk_size as usize, CHUNK_SIZE);
    assert_eq!(session.expires_at, T0 + UPLOAD_TTL_NANOS);
    // Chunks may arrive in any order.
    for i in [2usize, 0, 1] {
        let chunk = &bytes[i * CHUNK_SIZE..((i + 1) * CHUNK_SIZE).min(total)];
        service::upload_put_chunk(a, T0 + 1, session.upload_id, i as u32, buf(chunk)).unwrap();
    }
    let receipt =
        service::upload_finish(a, T0 + 2, session.upload_id, ByteBuf::from(sha(&bytes))).unwrap();
    assert_eq!(
        receipt,
        UploadReceipt {
            upload_id: session.upload_id,
            len: total as u64,
            sha256: ByteBuf::from(sha(&bytes)),
        }
    );
    let m = service::memory_create(
        a,
        T0 + 3,
        memory_input(
            "video",
            AssetInput::Upload {
                upload_id: session.upload_id,
            },
        ),
    )
    .unwrap();
    assert_eq!(
        m.asset,
        AssetInfo::Blob {
            len: total as u64,
            sha256: ByteBuf::from(sha(&bytes)),
            chunk_size: CHUNK_SIZE as u32,
            chunk_count: 3,
        }
    );
    assert_eq!(service::memory_get(a, m.id).unwrap().inline_bytes, None);
    for i in 0..3usize {
        let chunk = service::blob_read_chunk(a, m.id, i as u32).unwrap();
        assert_eq!(
            chunk.as_slice(),
            &bytes[i * CHUNK_SIZE..((i + 1) * CHUNK_SIZE).min(total)],
            "chunk {i}"
        );
    }
    assert_eq!(read_blob(a, m.id), bytes);
    assert_eq!(
        kind_of(service::blob_read_chunk(a, m.id, 3)),
        ErrorKind::ChunkOutOfRange {
            index: 3,
            chunk_count: 3
        }
    );
    let capsule = service::capsule_get(a).unwrap();
    assert_eq!(capsule.stored_bytes, total as u64);
    assert_eq!(capsule.memory_count, 1);
}

#[test]
fn blobs_of_two_memories_do_not_overlap() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let x = pattern(CHUNK_SIZE + 1, 1);
    let y = pattern(CHUNK_SIZE - 1, 2);
    let mx = blob_memory(a, T0, "x", &x);
    let my = blob_memory(a, T0, "y", &y);
    let small = blob_memory(a, T0, "one byte", &[42]);
    assert_eq!(read_blob(a, mx.id), x);
    assert_eq!(read_blob(a, my.id), y);
    assert_eq!(read_blob(a, small.id), vec![42]);
}

#[test]
fn duplicate_chunk_is_accepted_once() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let bytes = pattern(CHUNK_SIZE + 10, 5);
    let s = service::upload_begin(
        a,
        T0,
        UploadBegin {
            total_len: bytes.len() as u64,
        },
    )
    .unwrap();
    let (c0, c1) = bytes.split_at(CHUNK_SIZE);
    service::upload_put_chunk(a, T0, s.upload_id, 0, buf(c0)).unwrap();
    let pages = slot_pages();
    // The same chunk again: accepted, not stored again.
    service::upload_put_chunk(a, T0, s.upload_id, 0, buf(c0)).unwrap();
    assert_eq!(slot_pages(), pages);
    // Different bytes for a received chunk: refused, the first ones are kept.
    let mut other = c0.to_vec();
    other[17] ^= 1;
    assert_eq!(
        kind_of(service::upload_put_chunk(
            a,
            T0,
            s.upload_id,
            0,
            buf(&other)
        )),
        ErrorKind::ChunkConflict { index: 0 }
    );
    service::upload_put_chunk(a, T0, s.upload_id, 1, buf(c1)).unwrap();
    service::upload_put_chunk(a, T0, s.upload_id, 1, buf(c1)).unwrap();
    service::upload_finish(a, T0, s.upload_id, ByteBuf::from(sha(&bytes))).unwrap();
    let m = service::memory_create(
        a,
        T0,
        memory_input(
            "m",
            AssetInput::Upload {
                upload_id: s.upload_id,
            },
        ),
    )
    .unwrap();
    assert_eq!(read_blob(a, m.id), bytes);
}

#[test]
fn memory_update_and_delete() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let m = service::memory_create(a, T0, memory_input("first", inline(b"abc"))).unwrap();
    let updated = service::memory_update(
        a,
        T0 + 10,
        m.id,
        MemoryUpdate {
            title: Some("renamed".into()),
            description: None,
            tags: Some(vec!["new".into()]),
        },
    )
    .unwrap();
    assert_eq!(updated.title, "renamed");
    assert_eq!(updated.description, m.description);
    assert_eq!(updated.tags, vec!["new".to_string()]);
    assert_eq!(updated.kind, m.kind);
    assert_eq!(updated.asset, m.asset);
    assert_eq!((updated.created_at, updated.updated_at), (T0, T0 + 10));
    assert_eq!(service::memory_get(a, m.id).unwrap().memory, updated);
    // Tags can be cleared.
    let cleared = service::memory_update(
        a,
        T0 + 11,
        m.id,
        MemoryUpdate {
            tags: Some(vec![]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(cleared.tags.is_empty());

    let blob = blob_memory(a, T0, "blob", &pattern(CHUNK_SIZE + 5, 9));
    let capsule = service::capsule_get(a).unwrap();
    assert_eq!(capsule.memory_count, 2);
    assert_eq!(capsule.stored_bytes, 3 + CHUNK_SIZE as u64 + 5);

    service::memory_delete(a, T0 + 20, m.id).unwrap();
    assert_eq!(
        kind_of(service::memory_get(a, m.id)),
        ErrorKind::MemoryNotFound { id: m.id }
    );
    assert_eq!(
        kind_of(service::memory_delete(a, T0 + 21, m.id)),
        ErrorKind::MemoryNotFound { id: m.id }
    );
    let capsule = service::capsule_get(a).unwrap();
    assert_eq!(capsule.memory_count, 1);
    assert_eq!(capsule.stored_bytes, CHUNK_SIZE as u64 + 5);
    assert_eq!(capsule.updated_at, T0 + 20);

    service::memory_delete(a, T0 + 22, blob.id).unwrap();
    let capsule = service::capsule_get(a).unwrap();
    assert_eq!((capsule.memory_count, capsule.stored_bytes), (0, 0));
    assert_eq!(
        kind_of(service::blob_read_chunk(a, blob.id, 0)),
        ErrorKind::MemoryNotFound { id: blob.id }
    );
    // Ids are never reused.
    let next = service::memory_create(a, T0 + 30, memory_input("next", AssetInput::None)).unwrap();
    assert_eq!(next.id, 2);
}

/// A deleted blob's slots are reused by the next upload: the slot region does not grow.
#[test]
fn deleted_blob_slots_are_reused() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let first = pattern(2 * CHUNK_SIZE, 1);
    let m = blob_memory(a, T0, "first", &first);
    let pages = slot_pages();
    assert!(pages >= (2 * CHUNK_SIZE as u64).div_ceil(65_536));
    service::memory_delete(a, T0, m.id).unwrap();
    let second = pattern(2 * CHUNK_SIZE, 2);
    let m2 = blob_memory(a, T0, "second", &second);
    assert_eq!(slot_pages(), pages, "the freed slots were reused");
    assert_eq!(read_blob(a, m2.id), second);
    // The control: without a delete, a third blob needs new slots.
    blob_memory(a, T0, "third", &pattern(2 * CHUNK_SIZE, 3));
    assert!(slot_pages() > pages);
}

#[test]
fn aborted_and_expired_upload_slots_are_reused() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let bytes = pattern(CHUNK_SIZE, 4);
    let s = service::upload_begin(
        a,
        T0,
        UploadBegin {
            total_len: CHUNK_SIZE as u64,
        },
    )
    .unwrap();
    service::upload_put_chunk(a, T0, s.upload_id, 0, buf(&bytes)).unwrap();
    let pages = slot_pages();
    service::upload_abort(a, s.upload_id).unwrap();
    assert_eq!(
        kind_of(service::upload_abort(a, s.upload_id)),
        ErrorKind::UploadNotFound {
            upload_id: s.upload_id
        }
    );
    // Reuses the aborted upload's slot.
    let s2 = service::upload_begin(
        a,
        T0,
        UploadBegin {
            total_len: CHUNK_SIZE as u64,
        },
    )
    .unwrap();
    service::upload_put_chunk(a, T0, s2.upload_id, 0, buf(&bytes)).unwrap();
    assert_eq!(slot_pages(), pages);
    // Let it expire: a new upload after the expiry reuses its slot too.
    let later = T0 + UPLOAD_TTL_NANOS;
    let s3 = service::upload_begin(
        a,
        later,
        UploadBegin {
            total_len: CHUNK_SIZE as u64,
        },
    )
    .unwrap();
    service::upload_put_chunk(a, later, s3.upload_id, 0, buf(&bytes)).unwrap();
    assert_eq!(slot_pages(), pages);
    assert_eq!(
        kind_of(service::upload_put_chunk(
            a,
            later,
            s2.upload_id,
            0,
            buf(&bytes)
        )),
        ErrorKind::UploadNotFound {
            upload_id: s2.upload_id
        }
    );
    let m = blob_memory(a, later, "x", &[1, 2, 3]);
    assert_eq!(read_blob(a, m.id), vec![1, 2, 3]);
}

#[test]
fn pagination_over_250_memories() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    for i in 0..250u64 {
        let m = service::memory_create(a, T0 + i, memory_input(&format!("m{i}"), AssetInput::None))
            .unwrap();
        assert_eq!(m.id, i);
    }
    assert_eq!(service::capsule_get(a).unwrap().memory_count, 250);

    // The default page size.
    let first = service::memories_list(a, MemoryPageRequest::default()).unwrap();
    assert_eq!(first.items.len(), PAGE_DEFAULT);
    assert_eq!(first.next, Some(PAGE_DEFAULT as u64 - 1));

    for (limit, sizes) in [
        (PAGE_MAX as u32, vec![100, 100, 50]),
        (50, vec![50; 5]),
        (7, [vec![7; 35], vec![5]].concat()),
        (1, vec![1; 250]),
    ] {
        let mut seen = vec![];
        let mut got_sizes = vec![];
        let mut after = None;
        loop {
            let page = service::memories_list(
                a,
                MemoryPageRequest {
                    after,
                    limit: Some(limit),
                },
            )
            .unwrap();
            got_sizes.push(page.items.len());
            seen.extend(page.items.iter().map(|m| m.id));
            assert_eq!(page.next, page.next.and(page.items.last().map(|m| m.id)));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(got_sizes, sizes, "limit {limit}");
        assert_eq!(seen, (0..250).collect::<Vec<_>>(), "limit {limit}");
    }

    // `after` is exclusive and need not be an existing id.
    for id in [10u64, 20, 21, 22, 249] {
        service::memory_delete(a, T0 + 1000, id).unwrap();
    }
    let page = service::memories_list(
        a,
        MemoryPageRequest {
            after: Some(19),
            limit: Some(3),
        },
    )
    .unwrap();
    assert_eq!(
        page.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![23, 24, 25]
    );
    assert_eq!(page.next, Some(25));
    let tail = service::memories_list(
        a,
        MemoryPageRequest {
            after: Some(246),
            limit: Some(2),
        },
    )
    .unwrap();
    assert_eq!(
        tail.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![247, 248]
    );
    assert_eq!(tail.next, None, "no page after the last memory");
    let empty = service::memories_list(
        a,
        MemoryPageRequest {
            after: Some(10_000),
            limit: None,
        },
    )
    .unwrap();
    assert_eq!(
        empty,
        MemoryPage {
            items: vec![],
            next: None
        }
    );
    let all = all_memories(a);
    assert_eq!(all.len(), 245);
    assert!(all.iter().all(|m| ![10, 20, 21, 22, 249].contains(&m.id)));
    // Another user's memories never show up.
    service::capsule_create(stranger(), T0, capsule_input("S", "")).unwrap();
    service::memory_create(stranger(), T0, memory_input("theirs", AssetInput::None)).unwrap();
    assert_eq!(all_memories(a).len(), 245);
    assert_eq!(all_memories(stranger()).len(), 1);
}

#[test]
fn connections_add_respond_list_remove() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    let (p, q, r) = (user("p"), user("q"), user("r"));
    let cp = service::connection_add(a, T0 + 1, p, "colleague".into()).unwrap();
    assert_eq!(
        cp,
        Connection {
            peer: p,
            note: "colleague".into(),
            status: ConnectionStatus::Pending,
            created_at: T0 + 1,
            updated_at: T0 + 1
        }
    );
    service::connection_add(a, T0 + 2, q, String::new()).unwrap();
    service::connection_add(a, T0 + 3, r, "r".into()).unwrap();
    assert_eq!(service::capsule_get(a).unwrap().connection_count, 3);

    let accepted = service::connection_respond(a, T0 + 4, p, ConnectionResponse::Accept).unwrap();
    assert_eq!(accepted.status, ConnectionStatus::Accepted);
    assert_eq!((accepted.created_at, accepted.updated_at), (T0 + 1, T0 + 4));
    let blocked = service::connection_respond(a, T0 + 5, q, ConnectionResponse::Block).unwrap();
    assert_eq!(blocked.status, ConnectionStatus::Blocked);
    // A blocked connection can be accepted later, and the other way round.
    assert_eq!(
        service::connection_respond(a, T0 + 6, q, ConnectionResponse::Accept)
            .unwrap()
            .status,
        ConnectionStatus::Accepted
    );
    assert_eq!(
        service::connection_respond(a, T0 + 7, q, ConnectionResponse::Block)
            .unwrap()
            .status,
        ConnectionStatus::Blocked
    );

    let list = all_connections(a);
    assert_eq!(list.len(), 3);
    let by_peer = |x| list.iter().find(|c| c.peer == x).unwrap().clone();
    assert_eq!(by_peer(p), accepted);
    assert_eq!(by_peer(q).status, ConnectionStatus::Blocked);
    assert_eq!(by_peer(r).status, ConnectionStatus::Pending);

    service::connection_remove(a, T0 + 8, q).unwrap();
    assert_eq!(
        kind_of(service::connection_remove(a, T0 + 9, q)),
        ErrorKind::ConnectionNotFound { peer: q }
    );
    let capsule = service::capsule_get(a).unwrap();
    assert_eq!(capsule.connection_count, 2);
    assert_eq!(capsule.updated_at, T0 + 8);
    assert_eq!(
        all_connections(a)
            .iter()
            .map(|c| c.peer)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([p, r])
    );
    // Removed, it can be added again, pending.
    let again = service::connection_add(a, T0 + 10, q, "again".into()).unwrap();
    assert_eq!(again.status, ConnectionStatus::Pending);
    // Connections are per owner: the peer sees none unless they add their own.
    service::capsule_create(p, T0, capsule_input("P", "")).unwrap();
    assert!(all_connections(p).is_empty());
    service::connection_add(p, T0, a, "back".into()).unwrap();
    assert_eq!(all_connections(p).len(), 1);
    assert_eq!(all_connections(a).len(), 3);
}

#[test]
fn connection_pagination() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    // Two neighbours whose own connections must not leak into the owner's pages.
    service::capsule_create(user("n1"), T0, capsule_input("n1", "")).unwrap();
    service::connection_add(user("n1"), T0, user("peer 0"), "x".into()).unwrap();
    let peers: BTreeSet<_> = (0..120).map(|i| user(&format!("peer {i}"))).collect();
    for (i, p) in peers.iter().enumerate() {
        service::connection_add(a, T0 + i as u64, *p, format!("n{i}")).unwrap();
    }
    for (limit, sizes) in [
        (50u32, vec![50, 50, 20]),
        (PAGE_MAX as u32, vec![100, 20]),
        (40, vec![40, 40, 40]),
        (1, vec![1; 120]),
    ] {
        let mut seen = vec![];
        let mut got = vec![];
        let mut after = None;
        loop {
            let page = service::connections_list(
                a,
                ConnectionPageRequest {
                    after,
                    limit: Some(limit),
                },
            )
            .unwrap();
            got.push(page.items.len());
            seen.extend(page.items.iter().map(|c| c.peer));
            match page.next {
                Some(n) => {
                    assert_eq!(Some(n), page.items.last().map(|c| c.peer));
                    after = Some(n)
                }
                None => break,
            }
        }
        assert_eq!(got, sizes, "limit {limit}");
        // Every peer exactly once, in the principal order.
        assert_eq!(
            seen,
            peers.iter().copied().collect::<Vec<_>>(),
            "limit {limit}"
        );
    }
    let default = service::connections_list(a, ConnectionPageRequest::default()).unwrap();
    assert_eq!(default.items.len(), PAGE_DEFAULT);
    // `after` is exclusive.
    let third = *peers.iter().nth(2).unwrap();
    let page = service::connections_list(
        a,
        ConnectionPageRequest {
            after: Some(third),
            limit: Some(2),
        },
    )
    .unwrap();
    assert_eq!(
        page.items.iter().map(|c| c.peer).collect::<Vec<_>>(),
        peers.iter().skip(3).take(2).copied().collect::<Vec<_>>()
    );
    let last = *peers.iter().last().unwrap();
    let end = service::connections_list(
        a,
        ConnectionPageRequest {
            after: Some(last),
            limit: None,
        },
    )
    .unwrap();
    assert_eq!(
        end,
        ConnectionPage {
            items: vec![],
            next: None
        }
    );
}

#[test]
fn capsule_manifest_is_the_manifest_of_the_capsule() {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    service::memory_create(a, T0, memory_input("m", inline(b"abc"))).unwrap();
    assert_eq!(
        service::capsule_manifest(a).unwrap(),
        capsule::manifest::of(a).unwrap()
    );
    assert_eq!(capsule::manifest::of(stranger()), None);
}
