//! The capsule API's endpoints, written once for both canisters.
//!
//! `capsule_endpoints!()` expands, inside a canister crate that depends on `capsule`, `ic-cdk`,
//! `ic-cdk-timers`, `candid` and `serde_bytes`, to `capsule_start_timers()` (call it from init and
//! post_upgrade) and thin
//! `#[update]`/`#[query]` functions over `service`: the caller and the time come from the IC here and
//! nowhere else. Both canisters expanding the same macro is what keeps their capsule services identical.

#[macro_export]
macro_rules! capsule_endpoints {
    () => {
        /// Arms the capsule store's timers: the sweeper that drops expired uploads in small batches.
        fn capsule_start_timers() {
            fn sweep() {
                if ::capsule::service::sweep_expired_uploads(::ic_cdk::api::time()) {
                    ::ic_cdk_timers::set_timer(::std::time::Duration::ZERO, async { sweep() });
                }
            }
            ::ic_cdk_timers::set_timer_interval(
                ::std::time::Duration::from_secs(::capsule::limits::UPLOAD_SWEEP_INTERVAL_SECS),
                || async { sweep() },
            );
        }

        #[::ic_cdk::update]
        fn capsule_create(
            input: ::capsule::types::CapsuleInput,
        ) -> ::capsule::Result<::capsule::types::Capsule> {
            ::capsule::service::capsule_create(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                input,
            )
        }

        #[::ic_cdk::query]
        fn capsule_get() -> ::capsule::Result<::capsule::types::Capsule> {
            ::capsule::service::capsule_get(::ic_cdk::api::msg_caller())
        }

        #[::ic_cdk::update]
        fn capsule_update(
            update: ::capsule::types::CapsuleUpdate,
        ) -> ::capsule::Result<::capsule::types::Capsule> {
            ::capsule::service::capsule_update(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                update,
            )
        }

        #[::ic_cdk::query]
        fn capsule_manifest() -> ::capsule::Result<::capsule::types::Manifest> {
            ::capsule::service::capsule_manifest(::ic_cdk::api::msg_caller())
        }

        #[::ic_cdk::update]
        fn memory_create(
            input: ::capsule::types::MemoryInput,
        ) -> ::capsule::Result<::capsule::types::Memory> {
            ::capsule::service::memory_create(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                input,
            )
        }

        #[::ic_cdk::query]
        fn memory_get(id: u64) -> ::capsule::Result<::capsule::types::MemoryDetail> {
            ::capsule::service::memory_get(::ic_cdk::api::msg_caller(), id)
        }

        #[::ic_cdk::update]
        fn memory_update(
            id: u64,
            update: ::capsule::types::MemoryUpdate,
        ) -> ::capsule::Result<::capsule::types::Memory> {
            ::capsule::service::memory_update(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                id,
                update,
            )
        }

        #[::ic_cdk::update]
        fn memory_delete(id: u64) -> ::capsule::Result<()> {
            ::capsule::service::memory_delete(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                id,
            )
        }

        #[::ic_cdk::query]
        fn memories_list(
            req: ::capsule::types::MemoryPageRequest,
        ) -> ::capsule::Result<::capsule::types::MemoryPage> {
            ::capsule::service::memories_list(::ic_cdk::api::msg_caller(), req)
        }

        #[::ic_cdk::query]
        fn blob_read_chunk(
            memory_id: u64,
            index: u32,
        ) -> ::capsule::Result<::serde_bytes::ByteBuf> {
            ::capsule::service::blob_read_chunk(::ic_cdk::api::msg_caller(), memory_id, index)
        }

        #[::ic_cdk::update]
        fn upload_begin(
            req: ::capsule::types::UploadBegin,
        ) -> ::capsule::Result<::capsule::types::UploadSession> {
            ::capsule::service::upload_begin(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                req,
            )
        }

        #[::ic_cdk::update]
        fn upload_put_chunk(
            upload_id: u64,
            index: u32,
            bytes: ::serde_bytes::ByteBuf,
        ) -> ::capsule::Result<()> {
            ::capsule::service::upload_put_chunk(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                upload_id,
                index,
                bytes,
            )
        }

        #[::ic_cdk::update]
        fn upload_finish(
            upload_id: u64,
            sha256: ::serde_bytes::ByteBuf,
        ) -> ::capsule::Result<::capsule::types::UploadReceipt> {
            ::capsule::service::upload_finish(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                upload_id,
                sha256,
            )
        }

        #[::ic_cdk::update]
        fn upload_abort(upload_id: u64) -> ::capsule::Result<()> {
            ::capsule::service::upload_abort(::ic_cdk::api::msg_caller(), upload_id)
        }

        #[::ic_cdk::update]
        fn connection_add(
            peer: ::candid::Principal,
            note: String,
        ) -> ::capsule::Result<::capsule::types::Connection> {
            ::capsule::service::connection_add(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                peer,
                note,
            )
        }

        #[::ic_cdk::update]
        fn connection_respond(
            peer: ::candid::Principal,
            response: ::capsule::types::ConnectionResponse,
        ) -> ::capsule::Result<::capsule::types::Connection> {
            ::capsule::service::connection_respond(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                peer,
                response,
            )
        }

        #[::ic_cdk::update]
        fn connection_remove(peer: ::candid::Principal) -> ::capsule::Result<()> {
            ::capsule::service::connection_remove(
                ::ic_cdk::api::msg_caller(),
                ::ic_cdk::api::time(),
                peer,
            )
        }

        #[::ic_cdk::query]
        fn connections_list(
            req: ::capsule::types::ConnectionPageRequest,
        ) -> ::capsule::Result<::capsule::types::ConnectionPage> {
            ::capsule::service::connections_list(::ic_cdk::api::msg_caller(), req)
        }
    };
}
