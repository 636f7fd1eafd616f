mod common;
use candid::{Encode, Principal};
use common::*;
use engine::*;

#[test]
fn install_update_query_roundtrip() {
    let (mut e, c) = setup();
    assert_eq!(c.to_text(), "lxzze-o7777-77777-aaaaa-cai");
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 1);
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 2);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
    // Query state changes are discarded.
    assert_eq!(query::<u64>(&mut e, c, "query_inc", none()).unwrap(), 3);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
    let _ = Principal::anonymous();
    let _ = Encode!().unwrap();
}
