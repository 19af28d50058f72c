//! API tokens: stored hashed, looked up by id, revoked, touched.

use tutela_store::ApiToken;

use crate::support::on_each_engine;

fn token(id: &str, created_at: i64, expires_at: Option<i64>) -> ApiToken {
    ApiToken {
        id: id.to_string(),
        name: format!("token {id}"),
        scopes: vec!["vault:read".into(), "analytics:read".into()],
        secret_hash: vec![7u8; 32],
        created_at,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    }
}

#[tokio::test]
async fn tokens_round_trip_revoke_and_touch() {
    on_each_engine(|store| async move {
        store
            .insert_api_token(&token("aa11", 100, None))
            .await
            .unwrap();
        store
            .insert_api_token(&token("bb22", 200, Some(300)))
            .await
            .unwrap();
        // Ids are unique.
        assert!(
            store
                .insert_api_token(&token("aa11", 100, None))
                .await
                .is_err()
        );

        let a = store.api_token("aa11").await.unwrap().unwrap();
        assert_eq!(a, token("aa11", 100, None));
        assert!(a.is_active(10_000));
        let b = store.api_token("bb22").await.unwrap().unwrap();
        assert!(b.is_active(299) && !b.is_active(300));
        assert!(store.api_token("zz99").await.unwrap().is_none());
        let all = store.api_tokens().await.unwrap();
        assert_eq!(
            all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["bb22", "aa11"]
        );

        assert!(store.revoke_api_token("aa11", 500).await.unwrap());
        assert!(!store.revoke_api_token("aa11", 600).await.unwrap());
        assert!(!store.revoke_api_token("nope", 600).await.unwrap());
        let a = store.api_token("aa11").await.unwrap().unwrap();
        assert_eq!(a.revoked_at, Some(500));
        assert!(!a.is_active(501));

        store.touch_api_token("bb22", 1_000).await.unwrap();
        store.touch_api_token("bb22", 1_030).await.unwrap(); // within the minute: not rewritten
        assert_eq!(
            store.api_token("bb22").await.unwrap().unwrap().last_used_at,
            Some(1_000)
        );
        store.touch_api_token("bb22", 1_100).await.unwrap();
        assert_eq!(
            store.api_token("bb22").await.unwrap().unwrap().last_used_at,
            Some(1_100)
        );
    })
    .await;
}
