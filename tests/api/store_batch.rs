//! The store's group commit: writes submitted together share one transaction, each in its own
//! savepoint, so a write that fails after changing rows leaves no trace and takes no other
//! write down with it. Against the real `Store` on both backends.

use collab_hub::HubError;
use collab_hub::store::{DbTarget, Store, mcp_sessions};

use crate::helpers::{Backend, TestDb, both_backends};

both_backends!(a_failed_write_in_a_batch_undoes_only_itself);

async fn a_failed_write_in_a_batch_undoes_only_itself(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    // 200 writes at once: they reach the writer together and commit in a few batches. Every
    // third one writes its row and then fails.
    let writes = (0..200).map(|i| {
        let store = store.clone();
        async move {
            let id = format!("w{i}");
            let key = id.clone();
            let result = store
                .write(move |c| {
                    mcp_sessions::save(c, &key, "{}", 1)?;
                    if i % 3 == 0 {
                        return Err(HubError::invalid("i", "fails after writing"));
                    }
                    mcp_sessions::save(c, &key, "{\"second\":true}", 2)
                })
                .await;
            (i, id, result)
        }
    });
    let results = futures::future::join_all(writes).await;
    let fresh = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    for (i, id, result) in results {
        let key = id.clone();
        let stored = store
            .read(move |c| mcp_sessions::load(c, &key, fresh))
            .await
            .unwrap();
        if i % 3 == 0 {
            assert!(
                matches!(result, Err(HubError::Invalid { .. })),
                "{id}: {result:?}"
            );
            assert_eq!(stored, None, "{id}: a failed write left its row");
        } else {
            assert!(result.is_ok(), "{id}: {result:?}");
            assert_eq!(
                stored,
                Some(("{\"second\":true}".to_owned(), 2)),
                "{id}: an acknowledged write is missing or partial"
            );
        }
    }
    store.shutdown().await;
}
