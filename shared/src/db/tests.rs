//! Tests of the DynamoDB helpers.

use super::*;

#[test]
fn sorted_pages_walk_every_item_once_and_survive_removals() {
    let codec = CursorCodec::new(b"k");
    let items: Vec<u32> = (0..7).collect();
    let key = |i: &u32| format!("{i:03}");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = sorted_page(&codec, "t", "q", items.clone(), key, 3, cursor.as_deref())
            .unwrap_or_default();
        assert!(page.len() <= 3);
        seen.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, items);
    // A page ending exactly at the last item has no next page.
    let (page, next) =
        sorted_page(&codec, "t", "q", items.clone(), key, 7, None).unwrap_or_default();
    assert_eq!((page.len(), next), (7, None));
    // The item a cursor names may be gone: the next page still starts after it.
    let (_, next) = sorted_page(&codec, "t", "q", items.clone(), key, 2, None).unwrap_or_default();
    let fewer: Vec<u32> = items.iter().copied().filter(|i| *i != 1).collect();
    let (page, _) =
        sorted_page(&codec, "t", "q", fewer, key, 2, next.as_deref()).unwrap_or_default();
    assert_eq!(page, vec![2, 3]);
    // A cursor is bound to its tenant and query, and to this codec's key.
    let elsewhere = sorted_page(&codec, "other", "q", items.clone(), key, 2, next.as_deref());
    assert!(elsewhere.is_err());
    let filtered = sorted_page(&codec, "t", "q2", items.clone(), key, 2, next.as_deref());
    assert!(filtered.is_err());
    assert!(sorted_page(&codec, "t", "q", items, key, 2, Some("junk")).is_err());
    assert!(page_limit(Some(0)).is_err() && page_limit(Some(101)).is_err());
    assert_eq!(page_limit(None).ok(), Some(50));
}

#[test]
fn cursors_round_trip_and_are_bound() {
    let codec = CursorCodec::new(b"k");
    let last = HashMap::from([
        ("pk".to_string(), s("CLINIC#a")),
        ("sk".to_string(), s("MEMBER#1")),
        ("n".to_string(), n(5)),
    ]);
    let c = codec.seal("clinic-a", "members?role=DOCTOR", &last);
    assert_eq!(
        codec.open("clinic-a", "members?role=DOCTOR", &c).unwrap(),
        last
    );
    assert!(codec.open("clinic-b", "members?role=DOCTOR", &c).is_err());
    assert!(codec.open("clinic-a", "members", &c).is_err());
    assert!(
        CursorCodec::new(b"other")
            .open("clinic-a", "members?role=DOCTOR", &c)
            .is_err()
    );
    let (p, t) = c.split_once('.').unwrap();
    let mut edited = B64.decode(p).unwrap();
    edited[3] ^= 1;
    assert!(
        codec
            .open(
                "clinic-a",
                "members?role=DOCTOR",
                &format!("{}.{t}", B64.encode(edited))
            )
            .is_err()
    );
    assert!(codec.open("clinic-a", "q", "garbage").is_err());
}

#[test]
fn versioned_updates_set_remove_and_bump() {
    let mut u = VersionedUpdate::new();
    assert!(u.is_empty());
    u.set("name", s("x"))
        .remove("phone")
        .set("status", s("ACTIVE"));
    assert_eq!(
        u.expression(),
        "SET #u0 = :u0, #u2 = :u2, #version = #version + :one, #updatedAt = :now REMOVE #u1"
    );
    assert_eq!(
        VersionedUpdate::new().set("a", n(1)).expression(),
        "SET #u0 = :u0, #version = #version + :one, #updatedAt = :now"
    );
}

#[test]
fn reads_typed_attributes() {
    let item = HashMap::from([("a".to_string(), s("x")), ("b".to_string(), n(3))]);
    assert_eq!(get_s(&item, "a").unwrap(), "x");
    assert_eq!(get_n(&item, "b").unwrap(), 3);
    assert!(get_s(&item, "b").is_err());
    assert!(get_opt_n(&item, "zz").is_none());
}

fn service_error(code: &str) -> SdkErr<aws_sdk_dynamodb::operation::put_item::PutItemError> {
    let meta = aws_sdk_dynamodb::error::ErrorMetadata::builder()
        .code(code)
        .build();
    let raw = aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("status"),
        aws_smithy_types::body::SdkBody::empty(),
    );
    SdkError::service_error(
        aws_sdk_dynamodb::operation::put_item::PutItemError::generic(meta),
        raw,
    )
}

#[test]
fn faults_of_the_service_are_503_and_everything_else_500() {
    for code in [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "InternalServerError",
        "ResourceNotFoundException",
    ] {
        let e = fault(service_error(code));
        assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE, "{code}");
        assert_eq!(e.code(), "temporarily_unavailable");
    }
    let timeout: SdkErr<aws_sdk_dynamodb::operation::put_item::PutItemError> =
        SdkError::timeout_error("slow");
    assert_eq!(
        fault(timeout).status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
    for code in ["ValidationException", "ConditionalCheckFailedException"] {
        assert_eq!(
            fault(service_error(code)).status(),
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "{code}"
        );
    }
}
