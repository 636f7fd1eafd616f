//! Uploads cost what they carry: the digest is built as chunks arrive (in any order), finishing is
//! bounded, a wrong digest aborts, expired uploads are swept by anyone's clock, and the storage budget
//! refuses writes before the memory manager's limit.

mod common;

use capsule::error::ErrorKind;
use capsule::limits::*;
use capsule::service;
use capsule::store::stable_bytes;
use capsule::types::*;
use common::*;
use serde_bytes::ByteBuf;

fn begin(caller: candid::Principal, now: u64, len: usize) -> UploadSession {
    service::upload_begin(
        caller,
        now,
        UploadBegin {
            total_len: len as u64,
        },
    )
    .expect("upload_begin")
}

fn put_all(caller: candid::Principal, id: u64, bytes: &[u8], order: impl Iterator<Item = usize>) {
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_SIZE).collect();
    for i in order {
        service::upload_put_chunk(caller, T0, id, i as u32, buf(chunks[i])).expect("put");
    }
}

fn with_capsule() -> candid::Principal {
    let a = owner();
    service::capsule_create(a, T0, capsule_input("A", "")).unwrap();
    a
}

#[test]
fn chunks_in_reverse_order_are_hashed_by_bounded_steps() {
    let a = with_capsule();
    let chunks = 2 * UPLOAD_HASH_CATCH_UP + 3;
    let bytes = pattern(CHUNK_SIZE * (chunks - 1) + 77, 5);
    let s = begin(a, T0, bytes.len());
    put_all(a, s.upload_id, &bytes, (0..chunks).rev());
    // Chunk 0 came last: its message hashed itself and caught up UPLOAD_HASH_CATCH_UP more.
    let mut hashed = 1 + UPLOAD_HASH_CATCH_UP;
    loop {
        match service::upload_finish(a, T0, s.upload_id, ByteBuf::from(sha(&bytes))) {
            Err(e) => {
                hashed += UPLOAD_HASH_CATCH_UP;
                assert_eq!(
                    e.kind,
                    ErrorKind::UploadHashing {
                        upload_id: s.upload_id,
                        hashed_chunks: hashed as u32,
                        chunk_count: chunks as u32,
                    }
                );
            }
            Ok(receipt) => {
                assert_eq!(receipt.sha256.as_slice(), sha(&bytes).as_slice());
                assert!(hashed + UPLOAD_HASH_CATCH_UP >= chunks);
                break;
            }
        }
    }
    let m = service::memory_create(
        a,
        T0,
        memory_input(
            "big",
            AssetInput::Upload {
                upload_id: s.upload_id,
            },
        ),
    )
    .unwrap();
    assert_eq!(read_blob(a, m.id), bytes);
}

#[test]
fn chunks_in_order_leave_nothing_to_hash_at_finish() {
    let a = with_capsule();
    let bytes = pattern(CHUNK_SIZE * 3, 9);
    let s = begin(a, T0, bytes.len());
    // 1, 0, 2: a gap closed by the next chunk is caught up in that chunk's message.
    put_all(a, s.upload_id, &bytes, [1, 0, 2].into_iter());
    let receipt = service::upload_finish(a, T0, s.upload_id, ByteBuf::from(sha(&bytes))).unwrap();
    assert_eq!(receipt.len, bytes.len() as u64);
}

#[test]
fn a_wrong_digest_aborts_the_upload_and_the_sweeper_frees_its_chunks() {
    let a = with_capsule();
    let bytes = pattern(CHUNK_SIZE + 10, 3);
    let s = begin(a, T0, bytes.len());
    put_all(a, s.upload_id, &bytes, 0..2);
    let wrong = ByteBuf::from(vec![7u8; 32]);
    assert!(matches!(
        kind_of(service::upload_finish(a, T0, s.upload_id, wrong.clone())),
        ErrorKind::HashMismatch { .. }
    ));
    // Gone: finishing again (with any digest) costs nothing and says so.
    for digest in [wrong, ByteBuf::from(sha(&bytes))] {
        assert_eq!(
            kind_of(service::upload_finish(a, T0, s.upload_id, digest)),
            ErrorKind::UploadNotFound {
                upload_id: s.upload_id
            }
        );
    }
    // Not the finish's work: the sweeper frees its chunks, which the next upload of that size reuses.
    assert_eq!(service::storage_status().open_uploads, 1);
    assert!(!service::sweep_expired_uploads(T0));
    assert_eq!(service::storage_status().open_uploads, 0);
    let before = stable_bytes();
    upload(a, T0, &bytes);
    assert_eq!(stable_bytes(), before);
    assert_eq!(service::storage_status().open_uploads, 1);
}

#[test]
fn the_sweeper_drops_expired_uploads_of_every_owner_in_batches() {
    let users: Vec<_> = (0..UPLOAD_SWEEP_BATCH + 3)
        .map(|i| user(&format!("u{i}")))
        .collect();
    for (i, u) in users.iter().enumerate() {
        service::capsule_create(*u, T0, capsule_input("U", "")).unwrap();
        let s = begin(*u, T0 + i as u64, 10);
        service::upload_put_chunk(*u, T0, s.upload_id, 0, buf(&[1; 10])).unwrap();
    }
    let late = user("late");
    service::capsule_create(late, T0, capsule_input("L", "")).unwrap();
    let live = begin(late, T0 + UPLOAD_TTL_NANOS, 10);
    // Nothing is due before the first expiry.
    assert!(!service::sweep_expired_uploads(T0 + UPLOAD_TTL_NANOS - 1));
    assert_eq!(service::storage_status().uploads_swept, 0);
    let later = T0 + UPLOAD_TTL_NANOS + 1_000;
    assert!(
        service::sweep_expired_uploads(later),
        "a full batch says more are waiting"
    );
    assert_eq!(
        service::storage_status().uploads_swept,
        UPLOAD_SWEEP_BATCH as u64
    );
    assert!(!service::sweep_expired_uploads(later));
    let status = service::storage_status();
    assert_eq!(status.uploads_swept, users.len() as u64);
    assert_eq!(
        status.open_uploads, 1,
        "the upload that has not expired stays"
    );
    // The owners see their uploads gone, not expired-on-the-spot.
    assert_eq!(
        kind_of(service::upload_finish(
            users[1],
            later,
            2,
            ByteBuf::from(vec![0; 32])
        )),
        ErrorKind::UploadNotFound { upload_id: 2 }
    );
    service::upload_put_chunk(late, later, live.upload_id, 0, buf(&[2; 10])).unwrap();
}

#[test]
fn the_storage_budget_refuses_additions_and_still_lets_users_delete() {
    let a = with_capsule();
    let kept = service::memory_create(a, T0, memory_input("kept", inline(b"abc"))).unwrap();
    let s = begin(a, T0, 100);
    service::set_storage_budget(stable_bytes());
    assert_eq!(
        kind_of(service::upload_put_chunk(
            a,
            T0,
            s.upload_id,
            0,
            buf(&[0; 100])
        )),
        ErrorKind::StorageFull
    );
    assert_eq!(
        kind_of(service::memory_create(
            a,
            T0,
            memory_input("new", inline(b"x"))
        )),
        ErrorKind::StorageFull
    );
    assert_eq!(
        kind_of(service::upload_begin(a, T0, UploadBegin { total_len: 5 })),
        ErrorKind::StorageFull
    );
    assert_eq!(
        kind_of(service::capsule_create(
            stranger(),
            T0,
            capsule_input("S", "")
        )),
        ErrorKind::StorageFull
    );
    // Nothing was lost, and deleting frees space as always.
    assert_eq!(
        service::memory_get(a, kept.id).unwrap().memory.title,
        "kept"
    );
    service::memory_delete(a, T0, kept.id).unwrap();
    service::upload_abort(a, s.upload_id).unwrap();
    // With room again, writes go through.
    service::set_storage_budget(STORAGE_BUDGET_DEFAULT);
    service::memory_create(a, T0, memory_input("new", inline(b"x"))).unwrap();
    let status = service::storage_status();
    assert_eq!(status.budget_bytes, STORAGE_BUDGET_DEFAULT);
    assert_eq!(status.limit_bytes, STORAGE_LIMIT);
    const { assert!(STORAGE_BUDGET_DEFAULT < STORAGE_LIMIT) };
}
