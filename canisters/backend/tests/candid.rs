//! The checked-in `backend.did` is the service the code exports.
//! Regenerate with `UPDATE_DID=1 cargo test -p backend --test candid`.

#[test]
fn checked_in_did_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/backend.did");
    let exported = backend::candid_interface();
    if std::env::var_os("UPDATE_DID").is_some() {
        std::fs::write(path, &exported).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == exported,
        "{path} differs from the service the code exports; run `UPDATE_DID=1 cargo test -p backend --test candid`"
    );
}
