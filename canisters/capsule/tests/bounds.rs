//! Input bounds and authorization of the capsule API: every refused call gets its exact typed error and
//! leaves the capsule exactly as it was.

mod common;

use candid::Principal;
use capsule::error::{ErrorKind, Result};
use capsule::limits::*;
use capsule::service;
use capsule::types::*;
use common::*;
use rstest::rstest;
use serde_bytes::ByteBuf;

const NOW: u64 = T0 + 1_000;
const BIG_LEN: u64 = 2 * CHUNK_SIZE as u64 + 123;
const READY_BYTES: &[u8] = b"ten bytes!";

/// The owner's capsule with an inline memory, a blob memory, a connection and two open uploads.
struct Ctx {
    owner: Principal,
    /// Who tries to create a capsule: a fresh user in the backend; the owner (who already has one) in a
    /// personal canister, where bounds are checked before existence.
    creator: Principal,
    peer: Principal,
    inline_id: u64,
    blob_id: u64,
    /// Open, nothing received: 3 chunks (CHUNK_SIZE, CHUNK_SIZE, 123).
    big_upload: u64,
    /// Every chunk received, not finished.
    ready_upload: u64,
}

fn setup(sole_owner: bool) -> Ctx {
    let owner = owner();
    if sole_owner {
        service::set_sole_owner(Some(owner));
    } else {
        // The stranger has a capsule of their own in the shared backend.
        service::capsule_create(stranger(), T0, capsule_input("Stranger", "")).unwrap();
    }
    service::capsule_create(owner, T0, capsule_input("Ada", "Mathematician")).unwrap();
    let inline_id = service::memory_create(owner, T0, memory_input("inline", inline(b"hello")))
        .unwrap()
        .id;
    let blob_id = blob_memory(owner, T0, "blob", &pattern(1_000, 1)).id;
    let peer = user("peer");
    service::connection_add(owner, T0, peer, "friend".into()).unwrap();
    let big_upload = service::upload_begin(owner, T0, UploadBegin { total_len: BIG_LEN })
        .unwrap()
        .upload_id;
    let ready_upload = service::upload_begin(
        owner,
        T0,
        UploadBegin {
            total_len: READY_BYTES.len() as u64,
        },
    )
    .unwrap()
    .upload_id;
    service::upload_put_chunk(owner, T0, ready_upload, 0, buf(READY_BYTES)).unwrap();
    Ctx {
        owner,
        creator: if sole_owner { owner } else { user("fresh") },
        peer,
        inline_id,
        blob_id,
        big_upload,
        ready_upload,
    }
}

/// Every method of the capsule API, with arguments that are valid for the owner of a `Ctx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CapsuleCreate,
    CapsuleGet,
    CapsuleUpdate,
    CapsuleManifest,
    MemoryCreate,
    MemoryGet,
    MemoryUpdate,
    MemoryDelete,
    MemoriesList,
    BlobReadChunk,
    UploadBegin,
    UploadPutChunk,
    UploadFinish,
    UploadAbort,
    ConnectionAdd,
    ConnectionRespond,
    ConnectionRemove,
    ConnectionsList,
}

fn call(op: Op, caller: Principal, c: &Ctx) -> Result<()> {
    use Op::*;
    match op {
        CapsuleCreate => service::capsule_create(caller, NOW, capsule_input("New", "")).map(drop),
        CapsuleGet => service::capsule_get(caller).map(drop),
        CapsuleUpdate => service::capsule_update(
            caller,
            NOW,
            capsule::CapsuleUpdate {
                name: Some("Renamed".into()),
                bio: None,
            },
        )
        .map(drop),
        CapsuleManifest => service::capsule_manifest(caller).map(drop),
        MemoryCreate => {
            service::memory_create(caller, NOW, memory_input("new", inline(b"hi"))).map(drop)
        }
        MemoryGet => service::memory_get(caller, c.inline_id).map(drop),
        MemoryUpdate => service::memory_update(
            caller,
            NOW,
            c.inline_id,
            capsule::MemoryUpdate {
                title: Some("retitled".into()),
                ..Default::default()
            },
        )
        .map(drop),
        MemoryDelete => service::memory_delete(caller, NOW, c.inline_id),
        MemoriesList => service::memories_list(caller, MemoryPageRequest::default()).map(drop),
        BlobReadChunk => service::blob_read_chunk(caller, c.blob_id, 0).map(drop),
        UploadBegin => {
            service::upload_begin(caller, NOW, capsule::UploadBegin { total_len: 10 }).map(drop)
        }
        UploadPutChunk => service::upload_put_chunk(caller, NOW, c.big_upload, 2, buf(&[7; 123])),
        UploadFinish => {
            service::upload_finish(caller, NOW, c.ready_upload, ByteBuf::from(sha(READY_BYTES)))
                .map(drop)
        }
        UploadAbort => service::upload_abort(caller, c.big_upload),
        ConnectionAdd => {
            service::connection_add(caller, NOW, user("new peer"), "hi".into()).map(drop)
        }
        ConnectionRespond => {
            service::connection_respond(caller, NOW, c.peer, ConnectionResponse::Accept).map(drop)
        }
        ConnectionRemove => service::connection_remove(caller, NOW, c.peer),
        ConnectionsList => {
            service::connections_list(caller, ConnectionPageRequest::default()).map(drop)
        }
    }
}

/// Asserts `f` is refused with exactly `expected` and that nothing observable changed.
fn refused(c: &Ctx, expected: ErrorKind, f: impl FnOnce() -> Result<()>) {
    let before = fingerprint(c.owner);
    let fresh_before = service::has_capsule(user("fresh"));
    assert_eq!(kind_of(f()), expected);
    assert_eq!(
        fingerprint(c.owner),
        before,
        "a refused call changed the capsule"
    );
    assert_eq!(service::has_capsule(user("fresh")), fresh_before);
}

// ---- the table's own control: every op works for the owner --------------------------------------------

#[rstest]
fn every_op_works_for_the_owner(
    #[values(
        Op::CapsuleGet,
        Op::CapsuleUpdate,
        Op::CapsuleManifest,
        Op::MemoryCreate,
        Op::MemoryGet,
        Op::MemoryUpdate,
        Op::MemoryDelete,
        Op::MemoriesList,
        Op::BlobReadChunk,
        Op::UploadBegin,
        Op::UploadPutChunk,
        Op::UploadFinish,
        Op::UploadAbort,
        Op::ConnectionAdd,
        Op::ConnectionRespond,
        Op::ConnectionRemove,
        Op::ConnectionsList
    )]
    op: Op,
    #[values(true, false)] sole_owner: bool,
) {
    let c = setup(sole_owner);
    call(op, c.owner, &c).unwrap_or_else(|e| panic!("{op:?} as the owner: {e}"));
}

#[test]
fn capsule_create_works_once() {
    let fresh = user("fresh");
    let capsule = service::capsule_create(fresh, NOW, capsule_input("Fresh", "bio")).unwrap();
    assert_eq!(capsule.owner, fresh);
    let before = fingerprint(fresh);
    assert_eq!(
        kind_of(service::capsule_create(
            fresh,
            NOW + 1,
            capsule_input("Again", "")
        )),
        ErrorKind::CapsuleExists
    );
    assert_eq!(fingerprint(fresh), before);
}

// ---- authorization ----------------------------------------------------------------------------------

const ALL_OPS: [Op; 18] = [
    Op::CapsuleCreate,
    Op::CapsuleGet,
    Op::CapsuleUpdate,
    Op::CapsuleManifest,
    Op::MemoryCreate,
    Op::MemoryGet,
    Op::MemoryUpdate,
    Op::MemoryDelete,
    Op::MemoriesList,
    Op::BlobReadChunk,
    Op::UploadBegin,
    Op::UploadPutChunk,
    Op::UploadFinish,
    Op::UploadAbort,
    Op::ConnectionAdd,
    Op::ConnectionRespond,
    Op::ConnectionRemove,
    Op::ConnectionsList,
];

#[test]
fn all_ops_lists_every_op() {
    // Guards the `#[values]` lists below against a forgotten op.
    assert_eq!(ALL_OPS.len(), 18);
}

/// In a personal canister (sole owner set) anyone else is refused, reads included.
#[rstest]
fn non_owner_is_refused_everything(
    #[values(
        Op::CapsuleCreate,
        Op::CapsuleGet,
        Op::CapsuleUpdate,
        Op::CapsuleManifest,
        Op::MemoryCreate,
        Op::MemoryGet,
        Op::MemoryUpdate,
        Op::MemoryDelete,
        Op::MemoriesList,
        Op::BlobReadChunk,
        Op::UploadBegin,
        Op::UploadPutChunk,
        Op::UploadFinish,
        Op::UploadAbort,
        Op::ConnectionAdd,
        Op::ConnectionRespond,
        Op::ConnectionRemove,
        Op::ConnectionsList
    )]
    op: Op,
) {
    let c = setup(true);
    refused(&c, ErrorKind::NotOwner, || call(op, stranger(), &c));
    assert!(!service::has_capsule(stranger()));
}

/// The anonymous principal is refused everything, in the backend and in a personal canister.
#[rstest]
fn anonymous_is_refused_everything(
    #[values(
        Op::CapsuleCreate,
        Op::CapsuleGet,
        Op::CapsuleUpdate,
        Op::CapsuleManifest,
        Op::MemoryCreate,
        Op::MemoryGet,
        Op::MemoryUpdate,
        Op::MemoryDelete,
        Op::MemoriesList,
        Op::BlobReadChunk,
        Op::UploadBegin,
        Op::UploadPutChunk,
        Op::UploadFinish,
        Op::UploadAbort,
        Op::ConnectionAdd,
        Op::ConnectionRespond,
        Op::ConnectionRemove,
        Op::ConnectionsList
    )]
    op: Op,
    #[values(true, false)] sole_owner: bool,
) {
    let c = setup(sole_owner);
    refused(&c, ErrorKind::AnonymousCaller, || {
        call(op, Principal::anonymous(), &c)
    });
    assert!(!service::has_capsule(Principal::anonymous()));
}

/// In the shared backend, a signed-in user without a capsule can only create one. Another user's ids
/// (memory, upload, connection) are never reachable.
#[rstest]
#[case(Op::CapsuleGet, ErrorKind::CapsuleNotFound)]
#[case(Op::CapsuleUpdate, ErrorKind::CapsuleNotFound)]
#[case(Op::CapsuleManifest, ErrorKind::CapsuleNotFound)]
#[case(Op::MemoryCreate, ErrorKind::CapsuleNotFound)]
#[case(Op::MemoryGet, ErrorKind::CapsuleNotFound)]
#[case(Op::MemoryUpdate, ErrorKind::CapsuleNotFound)]
#[case(Op::MemoryDelete, ErrorKind::CapsuleNotFound)]
#[case(Op::MemoriesList, ErrorKind::CapsuleNotFound)]
#[case(Op::BlobReadChunk, ErrorKind::CapsuleNotFound)]
#[case(Op::UploadBegin, ErrorKind::CapsuleNotFound)]
#[case(Op::UploadPutChunk, ErrorKind::CapsuleNotFound)]
#[case(Op::UploadFinish, ErrorKind::CapsuleNotFound)]
#[case(Op::UploadAbort, ErrorKind::UploadNotFound { upload_id: 2 })]
#[case(Op::ConnectionAdd, ErrorKind::CapsuleNotFound)]
#[case(Op::ConnectionRespond, ErrorKind::CapsuleNotFound)]
#[case(Op::ConnectionRemove, ErrorKind::CapsuleNotFound)]
#[case(Op::ConnectionsList, ErrorKind::CapsuleNotFound)]
fn user_without_capsule(#[case] op: Op, #[case] expected: ErrorKind) {
    let c = setup(false);
    assert_eq!(c.big_upload, 2, "upload ids are allocated in order");
    refused(&c, expected, || call(op, user("fresh"), &c));
}

/// In the shared backend, another user who has a capsule reaches only their own: the owner's ids are
/// not found for them.
#[rstest]
#[case(Op::MemoryGet, ErrorKind::MemoryNotFound { id: 0 })]
#[case(Op::MemoryUpdate, ErrorKind::MemoryNotFound { id: 0 })]
#[case(Op::MemoryDelete, ErrorKind::MemoryNotFound { id: 0 })]
#[case(Op::BlobReadChunk, ErrorKind::MemoryNotFound { id: 1 })]
#[case(Op::UploadPutChunk, ErrorKind::UploadNotFound { upload_id: 2 })]
#[case(Op::UploadFinish, ErrorKind::UploadNotFound { upload_id: 3 })]
#[case(Op::UploadAbort, ErrorKind::UploadNotFound { upload_id: 2 })]
#[case(Op::ConnectionRespond, ErrorKind::ConnectionNotFound { peer: user("peer") })]
#[case(Op::ConnectionRemove, ErrorKind::ConnectionNotFound { peer: user("peer") })]
fn other_users_ids_are_not_found(#[case] op: Op, #[case] expected: ErrorKind) {
    let c = setup(false);
    assert_eq!(
        (c.inline_id, c.blob_id, c.big_upload, c.ready_upload),
        (0, 1, 2, 3)
    );
    let stranger_before = fingerprint(stranger());
    refused(&c, expected, || call(op, stranger(), &c));
    assert_eq!(fingerprint(stranger()), stranger_before);
}

// ---- locked and migrated capsules -------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Lock {
    Locked,
    Migrated,
}

fn lock(owner: Principal, l: Lock) -> ErrorKind {
    let canister_id = Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap();
    match l {
        Lock::Locked => {
            service::set_status(owner, CapsuleStatus::Locked);
            ErrorKind::CapsuleLocked
        }
        Lock::Migrated => {
            service::set_status(owner, CapsuleStatus::Migrated { canister_id });
            ErrorKind::CapsuleMigrated { canister_id }
        }
    }
}

#[rstest]
fn writes_are_refused_while_locked_or_migrated(
    #[values(
        Op::CapsuleCreate,
        Op::CapsuleUpdate,
        Op::MemoryCreate,
        Op::MemoryUpdate,
        Op::MemoryDelete,
        Op::UploadBegin,
        Op::UploadPutChunk,
        Op::UploadFinish,
        Op::ConnectionAdd,
        Op::ConnectionRespond,
        Op::ConnectionRemove
    )]
    op: Op,
    #[values(Lock::Locked, Lock::Migrated)] l: Lock,
    #[values(true, false)] sole_owner: bool,
) {
    let c = setup(sole_owner);
    let expected = lock(c.owner, l);
    refused(&c, expected, || call(op, c.owner, &c));
    // Back to Active, the same call goes through: the refusal came from the lock alone.
    service::set_status(c.owner, CapsuleStatus::Active);
    call(op, c.owner, &c).unwrap_or_else(|e| {
        if op != Op::CapsuleCreate {
            panic!("{op:?} after unlocking: {e}")
        }
    });
}

#[rstest]
fn reads_still_work_while_locked_or_migrated(
    #[values(
        Op::CapsuleGet,
        Op::CapsuleManifest,
        Op::MemoryGet,
        Op::MemoriesList,
        Op::BlobReadChunk,
        Op::ConnectionsList
    )]
    op: Op,
    #[values(Lock::Locked, Lock::Migrated)] l: Lock,
) {
    let c = setup(false);
    lock(c.owner, l);
    call(op, c.owner, &c).unwrap_or_else(|e| panic!("{op:?} while {l:?}: {e}"));
    let capsule = service::capsule_get(c.owner).unwrap();
    assert_eq!(capsule.status, service::status_of(c.owner));
    assert_ne!(capsule.status, CapsuleStatus::Active);
}

#[rstest]
fn a_migrated_user_cannot_create_a_new_capsule_here(
    #[values(Lock::Locked, Lock::Migrated)] l: Lock,
) {
    let c = setup(false);
    let fresh = user("fresh");
    let expected = lock(fresh, l);
    refused(&c, expected, || {
        service::capsule_create(fresh, NOW, capsule_input("Fresh", "")).map(drop)
    });
    assert!(!service::has_capsule(fresh));
}

// ---- input bounds -----------------------------------------------------------------------------------

type Call = fn(&Ctx) -> Result<()>;
type Expect = fn(&Ctx) -> ErrorKind;

fn too_long(field: &str, max: usize, actual: usize) -> ErrorKind {
    ErrorKind::TooLong {
        field: field.into(),
        max: max as u64,
        actual: actual as u64,
    }
}

fn too_many(field: &str, max: usize, actual: usize) -> ErrorKind {
    ErrorKind::TooMany {
        field: field.into(),
        max: max as u64,
        actual: actual as u64,
    }
}

fn invalid(field: &str, reason: &str) -> ErrorKind {
    ErrorKind::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

fn mem(f: impl FnOnce(&mut MemoryInput)) -> MemoryInput {
    let mut m = memory_input("t", AssetInput::None);
    f(&mut m);
    m
}

fn tags(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tag{i}")).collect()
}

#[rstest]
// capsule text
#[case::create_name(
    |c: &Ctx| service::capsule_create(c.creator, NOW, capsule_input(&text(NAME_MAX + 1), "")).map(drop),
    |_: &Ctx| too_long("name", NAME_MAX, NAME_MAX + 1))]
#[case::create_name_counts_bytes_not_chars(
    |c: &Ctx| service::capsule_create(c.creator, NOW, capsule_input(&"é".repeat(NAME_MAX / 2 + 1), "")).map(drop),
    |_: &Ctx| too_long("name", NAME_MAX, NAME_MAX + 2))]
#[case::create_bio(
    |c: &Ctx| service::capsule_create(c.creator, NOW, capsule_input("n", &text(BIO_MAX + 1))).map(drop),
    |_: &Ctx| too_long("bio", BIO_MAX, BIO_MAX + 1))]
#[case::update_name(
    |c: &Ctx| service::capsule_update(c.owner, NOW, CapsuleUpdate { name: Some(text(NAME_MAX + 1)), bio: None }).map(drop),
    |_: &Ctx| too_long("name", NAME_MAX, NAME_MAX + 1))]
#[case::update_bio(
    |c: &Ctx| service::capsule_update(c.owner, NOW, CapsuleUpdate { name: Some("ok".into()), bio: Some(text(BIO_MAX + 1)) }).map(drop),
    |_: &Ctx| too_long("bio", BIO_MAX, BIO_MAX + 1))]
#[case::create_twice(
    |c: &Ctx| service::capsule_create(c.owner, NOW, capsule_input("again", "")).map(drop),
    |_: &Ctx| ErrorKind::CapsuleExists)]
// memory text and tags
#[case::memory_title(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.title = text(TITLE_MAX + 1))).map(drop),
    |_: &Ctx| too_long("title", TITLE_MAX, TITLE_MAX + 1))]
#[case::memory_description(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.description = text(DESCRIPTION_MAX + 1))).map(drop),
    |_: &Ctx| too_long("description", DESCRIPTION_MAX, DESCRIPTION_MAX + 1))]
#[case::memory_mime_type(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.mime_type = text(MIME_MAX + 1))).map(drop),
    |_: &Ctx| too_long("mime_type", MIME_MAX, MIME_MAX + 1))]
#[case::memory_tag(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.tags = vec!["ok".into(), text(TAG_MAX + 1)])).map(drop),
    |_: &Ctx| too_long("tags[]", TAG_MAX, TAG_MAX + 1))]
#[case::memory_too_many_tags(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.tags = tags(TAGS_MAX + 1))).map(drop),
    |_: &Ctx| too_many("tags", TAGS_MAX, TAGS_MAX + 1))]
#[case::memory_empty_tag(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.tags = vec!["ok".into(), String::new()])).map(drop),
    |_: &Ctx| invalid("tags[]", "a tag cannot be empty"))]
#[case::memory_blank_tag(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.tags = vec![" \t ".into()])).map(drop),
    |_: &Ctx| invalid("tags[]", "a tag cannot be empty"))]
#[case::memory_inline_too_big(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.asset = inline(&vec![1; INLINE_MAX + 1]))).map(drop),
    |_: &Ctx| too_long("asset.inline", INLINE_MAX, INLINE_MAX + 1))]
#[case::update_title(
    |c: &Ctx| service::memory_update(c.owner, NOW, c.inline_id, MemoryUpdate { title: Some(text(TITLE_MAX + 1)), ..Default::default() }).map(drop),
    |_: &Ctx| too_long("title", TITLE_MAX, TITLE_MAX + 1))]
#[case::update_description(
    |c: &Ctx| service::memory_update(c.owner, NOW, c.inline_id, MemoryUpdate { description: Some(text(DESCRIPTION_MAX + 1)), ..Default::default() }).map(drop),
    |_: &Ctx| too_long("description", DESCRIPTION_MAX, DESCRIPTION_MAX + 1))]
#[case::update_tag(
    |c: &Ctx| service::memory_update(c.owner, NOW, c.inline_id, MemoryUpdate { tags: Some(vec![text(TAG_MAX + 1)]), ..Default::default() }).map(drop),
    |_: &Ctx| too_long("tags[]", TAG_MAX, TAG_MAX + 1))]
#[case::update_too_many_tags(
    |c: &Ctx| service::memory_update(c.owner, NOW, c.inline_id, MemoryUpdate { title: Some("ok".into()), tags: Some(tags(TAGS_MAX + 1)), ..Default::default() }).map(drop),
    |_: &Ctx| too_many("tags", TAGS_MAX, TAGS_MAX + 1))]
#[case::update_empty_tag(
    |c: &Ctx| service::memory_update(c.owner, NOW, c.inline_id, MemoryUpdate { tags: Some(vec![String::new()]), ..Default::default() }).map(drop),
    |_: &Ctx| invalid("tags[]", "a tag cannot be empty"))]
// memories that do not exist
#[case::get_unknown_memory(
    |c: &Ctx| service::memory_get(c.owner, 999).map(drop),
    |_: &Ctx| ErrorKind::MemoryNotFound { id: 999 })]
#[case::update_unknown_memory(
    |c: &Ctx| service::memory_update(c.owner, NOW, 999, MemoryUpdate::default()).map(drop),
    |_: &Ctx| ErrorKind::MemoryNotFound { id: 999 })]
#[case::delete_unknown_memory(
    |c: &Ctx| service::memory_delete(c.owner, NOW, 999),
    |_: &Ctx| ErrorKind::MemoryNotFound { id: 999 })]
#[case::read_chunk_of_unknown_memory(
    |c: &Ctx| service::blob_read_chunk(c.owner, 999, 0).map(drop),
    |_: &Ctx| ErrorKind::MemoryNotFound { id: 999 })]
#[case::read_chunk_of_inline_memory(
    |c: &Ctx| service::blob_read_chunk(c.owner, c.inline_id, 0).map(drop),
    |_: &Ctx| invalid("memory_id", "this memory has no blob asset"))]
#[case::read_chunk_out_of_range(
    |c: &Ctx| service::blob_read_chunk(c.owner, c.blob_id, 1).map(drop),
    |_: &Ctx| ErrorKind::ChunkOutOfRange { index: 1, chunk_count: 1 })]
// uploads
#[case::upload_empty(
    |c: &Ctx| service::upload_begin(c.owner, NOW, UploadBegin { total_len: 0 }).map(drop),
    |_: &Ctx| invalid("total_len", "an upload needs at least one byte"))]
#[case::upload_too_big(
    |c: &Ctx| service::upload_begin(c.owner, NOW, UploadBegin { total_len: BLOB_MAX + 1 }).map(drop),
    |_: &Ctx| too_long("total_len", BLOB_MAX as usize, BLOB_MAX as usize + 1))]
#[case::chunk_too_big(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, 0, buf(&vec![0; CHUNK_SIZE + 1])),
    |_: &Ctx| too_long("chunk", CHUNK_SIZE, CHUNK_SIZE + 1))]
#[case::chunk_too_short(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, 0, buf(&[0; 100])),
    |_: &Ctx| ErrorKind::ChunkSizeInvalid { index: 0, expected: CHUNK_SIZE as u64, actual: 100 })]
#[case::last_chunk_too_long(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, 2, buf(&[0; 124])),
    |_: &Ctx| ErrorKind::ChunkSizeInvalid { index: 2, expected: 123, actual: 124 })]
#[case::last_chunk_too_short(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, 2, buf(&[0; 122])),
    |_: &Ctx| ErrorKind::ChunkSizeInvalid { index: 2, expected: 123, actual: 122 })]
#[case::empty_chunk(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, 2, buf(&[])),
    |_: &Ctx| ErrorKind::ChunkSizeInvalid { index: 2, expected: 123, actual: 0 })]
#[case::chunk_out_of_range(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, 3, buf(&[0; 10])),
    |_: &Ctx| ErrorKind::ChunkOutOfRange { index: 3, chunk_count: 3 })]
#[case::chunk_index_max(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, c.big_upload, u32::MAX, buf(&[0; 10])),
    |_: &Ctx| ErrorKind::ChunkOutOfRange { index: u32::MAX, chunk_count: 3 })]
#[case::put_chunk_unknown_session(
    |c: &Ctx| service::upload_put_chunk(c.owner, NOW, 999, 0, buf(&[0; 10])),
    |_: &Ctx| ErrorKind::UploadNotFound { upload_id: 999 })]
#[case::finish_unknown_session(
    |c: &Ctx| service::upload_finish(c.owner, NOW, 999, ByteBuf::from(sha(b""))).map(drop),
    |_: &Ctx| ErrorKind::UploadNotFound { upload_id: 999 })]
#[case::abort_unknown_session(
    |c: &Ctx| service::upload_abort(c.owner, 999),
    |_: &Ctx| ErrorKind::UploadNotFound { upload_id: 999 })]
#[case::memory_from_unknown_session(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.asset = AssetInput::Upload { upload_id: 999 })).map(drop),
    |_: &Ctx| ErrorKind::UploadNotFound { upload_id: 999 })]
#[case::wrong_hash_at_finish(
    |c: &Ctx| service::upload_finish(c.owner, NOW, c.ready_upload, ByteBuf::from(sha(b"other bytes"))).map(drop),
    |_: &Ctx| ErrorKind::HashMismatch { expected: hex::encode(sha(b"other bytes")), actual: hex::encode(sha(READY_BYTES)) })]
#[case::hash_of_wrong_length(
    |c: &Ctx| service::upload_finish(c.owner, NOW, c.ready_upload, buf(&[0; 31])).map(drop),
    |_: &Ctx| invalid("sha256", "must be 32 bytes, got 31"))]
#[case::finish_incomplete(
    |c: &Ctx| service::upload_finish(c.owner, NOW, c.big_upload, ByteBuf::from(sha(b""))).map(drop),
    |c: &Ctx| ErrorKind::UploadIncomplete { upload_id: c.big_upload, missing_chunks: 3 })]
#[case::memory_from_incomplete_session(
    |c: &Ctx| service::memory_create(c.owner, NOW, mem(|m| m.asset = AssetInput::Upload { upload_id: c.big_upload })).map(drop),
    |c: &Ctx| ErrorKind::UploadIncomplete { upload_id: c.big_upload, missing_chunks: 3 })]
// pages
#[case::memories_limit_zero(
    |c: &Ctx| service::memories_list(c.owner, MemoryPageRequest { after: None, limit: Some(0) }).map(drop),
    |_: &Ctx| invalid("limit", "must be at least 1"))]
#[case::memories_limit_too_large(
    |c: &Ctx| service::memories_list(c.owner, MemoryPageRequest { after: None, limit: Some(PAGE_MAX as u32 + 1) }).map(drop),
    |_: &Ctx| too_many("limit", PAGE_MAX, PAGE_MAX + 1))]
#[case::memories_limit_max_u32(
    |c: &Ctx| service::memories_list(c.owner, MemoryPageRequest { after: None, limit: Some(u32::MAX) }).map(drop),
    |_: &Ctx| too_many("limit", PAGE_MAX, u32::MAX as usize))]
#[case::memories_after_u64_max(
    |c: &Ctx| service::memories_list(c.owner, MemoryPageRequest { after: Some(u64::MAX), limit: None }).map(drop),
    |_: &Ctx| invalid("after", "no memory comes after u64::MAX"))]
#[case::connections_limit_zero(
    |c: &Ctx| service::connections_list(c.owner, ConnectionPageRequest { after: None, limit: Some(0) }).map(drop),
    |_: &Ctx| invalid("limit", "must be at least 1"))]
#[case::connections_limit_too_large(
    |c: &Ctx| service::connections_list(c.owner, ConnectionPageRequest { after: None, limit: Some(PAGE_MAX as u32 + 1) }).map(drop),
    |_: &Ctx| too_many("limit", PAGE_MAX, PAGE_MAX + 1))]
// connections
#[case::connection_note(
    |c: &Ctx| service::connection_add(c.owner, NOW, user("new peer"), text(NOTE_MAX + 1)).map(drop),
    |_: &Ctx| too_long("note", NOTE_MAX, NOTE_MAX + 1))]
#[case::connection_exists(
    |c: &Ctx| service::connection_add(c.owner, NOW, c.peer, "again".into()).map(drop),
    |_: &Ctx| ErrorKind::ConnectionExists { peer: user("peer") })]
#[case::connection_to_self(
    |c: &Ctx| service::connection_add(c.owner, NOW, c.owner, "me".into()).map(drop),
    |_: &Ctx| invalid("peer", "cannot connect to yourself"))]
#[case::connection_to_anonymous(
    |c: &Ctx| service::connection_add(c.owner, NOW, Principal::anonymous(), "anon".into()).map(drop),
    |_: &Ctx| invalid("peer", "cannot connect to the anonymous principal"))]
#[case::respond_unknown_connection(
    |c: &Ctx| service::connection_respond(c.owner, NOW, user("nobody"), ConnectionResponse::Block).map(drop),
    |_: &Ctx| ErrorKind::ConnectionNotFound { peer: user("nobody") })]
#[case::remove_unknown_connection(
    |c: &Ctx| service::connection_remove(c.owner, NOW, user("nobody")),
    |_: &Ctx| ErrorKind::ConnectionNotFound { peer: user("nobody") })]
fn input_bound(#[case] f: Call, #[case] expected: Expect, #[values(true, false)] sole_owner: bool) {
    let c = setup(sole_owner);
    let want = expected(&c);
    refused(&c, want, || f(&c));
}

/// Exactly at every bound is accepted (the refusals above are off by exactly one).
#[test]
fn values_at_the_bounds_are_accepted() {
    let c = setup(false);
    let fresh = user("fresh");
    service::capsule_create(fresh, NOW, capsule_input(&text(NAME_MAX), &text(BIO_MAX))).unwrap();
    service::capsule_update(
        c.owner,
        NOW,
        CapsuleUpdate {
            name: Some("é".repeat(NAME_MAX / 2)),
            bio: Some(text(BIO_MAX)),
        },
    )
    .unwrap();
    let m = service::memory_create(
        c.owner,
        NOW,
        MemoryInput {
            title: text(TITLE_MAX),
            description: text(DESCRIPTION_MAX),
            tags: (0..TAGS_MAX)
                .map(|i| format!("{i:0>width$}", width = TAG_MAX))
                .collect(),
            kind: MemoryKind::Document,
            mime_type: text(MIME_MAX),
            asset: inline(&vec![9; INLINE_MAX]),
        },
    )
    .unwrap();
    assert_eq!(m.tags.len(), TAGS_MAX);
    assert_eq!(
        m.asset,
        AssetInfo::Inline {
            len: INLINE_MAX as u64,
            sha256: ByteBuf::from(sha(&vec![9; INLINE_MAX]))
        }
    );
    service::memory_update(
        c.owner,
        NOW,
        m.id,
        MemoryUpdate {
            title: Some(text(TITLE_MAX)),
            description: Some(text(DESCRIPTION_MAX)),
            tags: Some(vec![text(TAG_MAX)]),
        },
    )
    .unwrap();
    service::connection_add(c.owner, NOW, user("new peer"), text(NOTE_MAX)).unwrap();
    for limit in [1, PAGE_MAX as u32] {
        service::memories_list(
            c.owner,
            MemoryPageRequest {
                after: None,
                limit: Some(limit),
            },
        )
        .unwrap();
        service::connections_list(
            c.owner,
            ConnectionPageRequest {
                after: None,
                limit: Some(limit),
            },
        )
        .unwrap();
    }
    service::upload_begin(
        c.owner,
        NOW,
        UploadBegin {
            total_len: BLOB_MAX,
        },
    )
    .unwrap();
}

// ---- upload sessions: expiry and the per-caller cap -------------------------------------------------

#[rstest]
#[case::put_chunk(|c: &Ctx, now: u64| service::upload_put_chunk(c.owner, now, c.big_upload, 2, buf(&[0; 123])), false)]
#[case::finish(|c: &Ctx, now: u64| service::upload_finish(c.owner, now, c.ready_upload, ByteBuf::from(sha(READY_BYTES))).map(drop), false)]
#[case::memory_create(
    |c: &Ctx, now: u64| service::memory_create(c.owner, now, mem(|m| m.asset = AssetInput::Upload { upload_id: c.ready_upload })).map(drop),
    true)]
fn expired_upload_session(#[case] f: fn(&Ctx, u64) -> Result<()>, #[case] finish_first: bool) {
    let c = setup(false);
    if finish_first {
        service::upload_finish(c.owner, T0, c.ready_upload, ByteBuf::from(sha(READY_BYTES)))
            .unwrap();
    }
    let before = fingerprint(c.owner);
    let expires = T0 + UPLOAD_TTL_NANOS;
    let e = kind_of(f(&c, expires));
    assert!(
        e == ErrorKind::UploadExpired {
            upload_id: c.big_upload
        } || e
            == ErrorKind::UploadExpired {
                upload_id: c.ready_upload
            },
        "{e:?}"
    );
    let ErrorKind::UploadExpired { upload_id } = e else {
        unreachable!()
    };
    assert_eq!(
        fingerprint(c.owner),
        before,
        "an expired upload changed nothing"
    );
    // An expired session is dropped on the spot: from now on it is unknown, even "back in time".
    assert_eq!(
        kind_of(f(&c, expires + 1)),
        ErrorKind::UploadNotFound { upload_id }
    );
    assert_eq!(
        kind_of(f(&c, T0 + 1)),
        ErrorKind::UploadNotFound { upload_id }
    );
}

#[rstest]
#[case::put_chunk(|c: &Ctx, now: u64| service::upload_put_chunk(c.owner, now, c.big_upload, 2, buf(&[0; 123])))]
#[case::finish(|c: &Ctx, now: u64| service::upload_finish(c.owner, now, c.ready_upload, ByteBuf::from(sha(READY_BYTES))).map(drop))]
fn upload_session_alive_until_its_expiry(#[case] f: fn(&Ctx, u64) -> Result<()>) {
    let c = setup(false);
    f(&c, T0 + UPLOAD_TTL_NANOS - 1).unwrap();
}

#[test]
fn too_many_open_uploads() {
    let c = setup(false);
    // The context holds 2 open uploads; two more fit.
    let third = service::upload_begin(c.owner, NOW, UploadBegin { total_len: 1 }).unwrap();
    service::upload_begin(c.owner, NOW, UploadBegin { total_len: 1 }).unwrap();
    let before = fingerprint(c.owner);
    assert_eq!(
        kind_of(service::upload_begin(
            c.owner,
            NOW,
            UploadBegin { total_len: 1 }
        )),
        too_many(
            "open uploads",
            UPLOADS_PER_CALLER_MAX,
            UPLOADS_PER_CALLER_MAX + 1
        )
    );
    assert_eq!(fingerprint(c.owner), before);
    // The cap is per caller: another user is not affected.
    service::upload_begin(stranger(), NOW, UploadBegin { total_len: 1 }).unwrap();
    // Aborting one frees a place.
    service::upload_abort(c.owner, third.upload_id).unwrap();
    service::upload_begin(c.owner, NOW, UploadBegin { total_len: 1 }).unwrap();
    assert!(service::upload_begin(c.owner, NOW, UploadBegin { total_len: 1 }).is_err());
    // A finished session still counts until a memory takes it.
    service::upload_finish(
        c.owner,
        NOW,
        c.ready_upload,
        ByteBuf::from(sha(READY_BYTES)),
    )
    .unwrap();
    assert!(service::upload_begin(c.owner, NOW, UploadBegin { total_len: 1 }).is_err());
    service::memory_create(
        c.owner,
        NOW,
        mem(|m| {
            m.asset = AssetInput::Upload {
                upload_id: c.ready_upload,
            }
        }),
    )
    .unwrap();
    service::upload_begin(c.owner, NOW, UploadBegin { total_len: 1 }).unwrap();
    // Expired sessions are swept when a new one begins.
    let later = NOW + UPLOAD_TTL_NANOS;
    for _ in 0..UPLOADS_PER_CALLER_MAX {
        service::upload_begin(c.owner, later, UploadBegin { total_len: 1 }).unwrap();
    }
    assert_eq!(
        kind_of(service::upload_begin(
            c.owner,
            later,
            UploadBegin { total_len: 1 }
        )),
        too_many(
            "open uploads",
            UPLOADS_PER_CALLER_MAX,
            UPLOADS_PER_CALLER_MAX + 1
        )
    );
}

#[test]
fn duplicate_and_conflicting_chunks() {
    let c = setup(false);
    let bytes = pattern(READY_BYTES.len(), 0);
    // The ready upload already holds READY_BYTES at index 0: the same bytes again are accepted...
    service::upload_put_chunk(c.owner, NOW, c.ready_upload, 0, buf(READY_BYTES)).unwrap();
    // ...different bytes are a conflict and do not replace them.
    assert_eq!(
        kind_of(service::upload_put_chunk(
            c.owner,
            NOW,
            c.ready_upload,
            0,
            buf(&bytes)
        )),
        ErrorKind::ChunkConflict { index: 0 }
    );
    let receipt = service::upload_finish(
        c.owner,
        NOW,
        c.ready_upload,
        ByteBuf::from(sha(READY_BYTES)),
    )
    .unwrap();
    assert_eq!(receipt.sha256.as_slice(), sha(READY_BYTES).as_slice());
    // Finishing twice with the same hash is idempotent; with another hash it is a mismatch.
    assert_eq!(
        service::upload_finish(
            c.owner,
            NOW,
            c.ready_upload,
            ByteBuf::from(sha(READY_BYTES))
        )
        .unwrap(),
        receipt
    );
    assert_eq!(
        kind_of(service::upload_finish(
            c.owner,
            NOW,
            c.ready_upload,
            ByteBuf::from(sha(&bytes))
        )),
        ErrorKind::HashMismatch {
            expected: hex::encode(sha(&bytes)),
            actual: hex::encode(sha(READY_BYTES))
        }
    );
    // A finished session takes no more chunks.
    assert_eq!(
        kind_of(service::upload_put_chunk(
            c.owner,
            NOW,
            c.ready_upload,
            0,
            buf(READY_BYTES)
        )),
        invalid("upload_id", "this upload is already finished")
    );
    let m = service::memory_create(
        c.owner,
        NOW,
        mem(|m| {
            m.asset = AssetInput::Upload {
                upload_id: c.ready_upload,
            }
        }),
    )
    .unwrap();
    assert_eq!(read_blob(c.owner, m.id), READY_BYTES);
    // The session was consumed by the memory.
    assert_eq!(
        kind_of(service::memory_create(
            c.owner,
            NOW,
            mem(|m| m.asset = AssetInput::Upload {
                upload_id: c.ready_upload
            })
        )),
        ErrorKind::UploadNotFound {
            upload_id: c.ready_upload
        }
    );
}

#[test]
fn too_many_connections() {
    let c = setup(false);
    // The context has one connection.
    for i in 1..CONNECTIONS_MAX {
        service::connection_add(c.owner, NOW, user(&format!("peer {i}")), String::new()).unwrap();
    }
    assert_eq!(
        service::capsule_get(c.owner).unwrap().connection_count,
        CONNECTIONS_MAX
    );
    refused(
        &c,
        too_many(
            "connections",
            CONNECTIONS_MAX as usize,
            CONNECTIONS_MAX as usize + 1,
        ),
        || service::connection_add(c.owner, NOW, user("one too many"), String::new()).map(drop),
    );
    // Removing one makes room again.
    service::connection_remove(c.owner, NOW, c.peer).unwrap();
    service::connection_add(c.owner, NOW, user("one too many"), String::new()).unwrap();
}
