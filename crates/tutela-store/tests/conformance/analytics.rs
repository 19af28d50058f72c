//! Analytics storage: batches and rollups, reports, salts, retention by whole days, rights hooks.

use tutela_store::analytics::{AnalyticsBatch, DimDelta, EventRow, HourlyDelta, PurgeCounts, kind};

use crate::support::on_each_engine;

fn event(day: i64, ts: i64, visitor: i64, url: &str) -> EventRow {
    EventRow {
        site_id: 1,
        day,
        ts,
        visitor,
        visit_start: ts,
        kind: kind::PAGEVIEW,
        url: Some(url.into()),
        title: Some("T".into()),
        ev_value: Some(1.5),
        ip_prefix: Some("203.0.0.0".into()),
        browser: Some("Firefox".into()),
        device: Some("desktop".into()),
        ..EventRow::default()
    }
}

fn hourly(day: i64, hour: i64, visits: i64, pageviews: i64) -> HourlyDelta {
    HourlyDelta {
        site_id: 1,
        day,
        hour,
        visits,
        actions: pageviews,
        pageviews,
        bounces: visits,
        duration: 10,
        ..HourlyDelta::default()
    }
}

fn dim(day: i64, value: &str, n: i64) -> DimDelta {
    DimDelta {
        site_id: 1,
        day,
        dim: "page",
        value: value.into(),
        n,
    }
}

#[tokio::test]
async fn batches_rollups_reports_retention_and_erasure() {
    on_each_engine(|store| async move {
        // 300 events in one batch: several multi-row chunks.
        let mut events: Vec<EventRow> = (0..300)
            .map(|i| event(20261101 + (i % 3), 1_000 + i, i % 7, "https://ex.com/a"))
            .collect();
        events[0].ev_category = Some("Video".into());
        let batch = AnalyticsBatch {
            events: events.clone(),
            hourly: vec![hourly(20261101, 9, 2, 5), hourly(20261102, 10, 1, 1)],
            dims: vec![
                dim(20261101, "https://ex.com/a", 3),
                dim(20261102, "https://ex.com/b", 4),
            ],
            visitor_days: vec![
                (1, 20261101, 1, 9),
                (1, 20261101, 2, 9),
                (1, 20261102, 2, 10),
                (1, 20261103, 3, 0),
                // Visitor 3 also has events on the first two days (every event's visitor-day
                // is recorded: the rights hooks find events through these entries).
                (1, 20261101, 3, 23),
                (1, 20261102, 3, 23),
            ],
            sketches: vec![
                (1, 20261101, "n1".into(), vec![1, 2]),
                (1, 20261102, "n1".into(), vec![3]),
            ],
            chunks: Vec::new(),
        };
        store.analytics_write_batch(&batch).await.unwrap();
        // Rollups add up across batches; a negative delta takes back.
        let more = AnalyticsBatch {
            hourly: vec![hourly(20261101, 9, 1, 1)],
            dims: vec![
                dim(20261101, "https://ex.com/a", -1),
                dim(20261102, "https://ex.com/a", 1),
            ],
            visitor_days: vec![(1, 20261101, 1, 11)],
            sketches: vec![
                (1, 20261101, "n1".into(), vec![5, 5]),
                (1, 20261101, "n2".into(), vec![7]),
            ],
            ..AnalyticsBatch::default()
        };
        store.analytics_write_batch(&more).await.unwrap();
        store
            .analytics_write_batch(&AnalyticsBatch::default())
            .await
            .unwrap();

        assert_eq!(store.analytics_event_count(1).await.unwrap(), 300);
        let t = store.analytics_totals(1, 20261101, 20261101).await.unwrap();
        assert_eq!(
            (t.visits, t.pageviews, t.bounces, t.duration),
            (3, 6, 3, 20)
        );
        // Visitor 1 was already counted on that day: two distinct visitors in hour 9, and
        // visitor 3 in hour 23.
        assert_eq!(t.visitors, 3);
        let h = store
            .analytics_series(1, 20261101, 20261101, true)
            .await
            .unwrap();
        assert_eq!(
            h.iter()
                .map(|p| (p.hour, p.totals.visitors))
                .collect::<Vec<_>>(),
            [(Some(9), 2), (Some(23), 1)]
        );
        // Sketch rows are replaced per (site, day, node).
        let mut sk = store
            .analytics_sketches(1, 20261101, 20261130)
            .await
            .unwrap();
        sk.sort();
        assert_eq!(sk, [vec![3], vec![5, 5], vec![7]]);
        let mut days = store.analytics_visitors_of_day(1, 20261101).await.unwrap();
        days.sort();
        assert_eq!(days, [1, 2, 3]);
        let all = store.analytics_totals(1, 20261101, 20261130).await.unwrap();
        assert_eq!(all.visits, 4);
        let series = store
            .analytics_series(1, 20261101, 20261130, false)
            .await
            .unwrap();
        assert_eq!(
            series
                .iter()
                .map(|p| (p.day, p.hour, p.totals.visits))
                .collect::<Vec<_>>(),
            [
                (20261101, None, 3),
                (20261102, None, 1),
                (20261103, None, 0)
            ]
        );
        let hours = store
            .analytics_series(1, 20261101, 20261101, true)
            .await
            .unwrap();
        assert_eq!(hours[0].hour, Some(9));
        let top = store
            .analytics_top(1, "page", 20261101, 20261130, 10)
            .await
            .unwrap();
        assert_eq!(
            top,
            [
                ("https://ex.com/b".to_string(), 4),
                ("https://ex.com/a".to_string(), 3)
            ]
        );
        assert_eq!(
            store
                .analytics_unique_visitors(1, 20261101, 20261130)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            store
                .analytics_unique_visitors(1, 20261102, 20261103)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .analytics_daily_unique_visitors(1, 20261101, 20261130)
                .await
                .unwrap(),
            [(20261101, 3), (20261102, 2), (20261103, 1)]
        );

        // Rights hooks: one pseudonym's events, then their erasure.
        let mine = store.analytics_events_of(1, 3).await.unwrap();
        assert_eq!(mine.len(), events.iter().filter(|e| e.visitor == 3).count());
        assert_eq!(
            mine[0],
            events.iter().find(|e| e.visitor == 3).unwrap().clone()
        );
        assert!(mine.windows(2).all(|w| w[0].ts <= w[1].ts));
        let erased = store.analytics_erase_visitor(1, 3).await.unwrap();
        assert_eq!(erased as usize, mine.len());
        assert!(store.analytics_events_of(1, 3).await.unwrap().is_empty());
        assert_eq!(
            store
                .analytics_unique_visitors(1, 20261101, 20261130)
                .await
                .unwrap(),
            2
        );

        // Retention: whole days through 2026-11-01 go; later days and other sites stay.
        let before = store.analytics_totals(1, 20261102, 20261130).await.unwrap();
        let purged = store.analytics_purge_through(1, 20261101).await.unwrap();
        assert!(purged.events >= 80 && purged.rollup_rows >= 3, "{purged:?}");
        assert_eq!(store.analytics_oldest_day(1).await.unwrap(), Some(20261102));
        assert_eq!(
            store.analytics_totals(1, 20261102, 20261130).await.unwrap(),
            before
        );
        assert_eq!(
            store
                .analytics_totals(1, 20261101, 20261101)
                .await
                .unwrap()
                .visits,
            0
        );
        assert_eq!(
            store.analytics_purge_through(1, 20261101).await.unwrap(),
            PurgeCounts::default()
        );
        assert_eq!(store.analytics_oldest_day(9).await.unwrap(), None);
        // Sites with events or rollups are listed, whatever the configuration says.
        let ids = store.analytics_site_ids().await.unwrap();
        assert!(ids.contains(&1) && !ids.contains(&9), "{ids:?}");
    })
    .await;
}

#[tokio::test]
async fn salts_are_created_once_per_period_and_destroyed_after() {
    on_each_engine(|store| async move {
        let a = store
            .analytics_salt(1, "visitor", 100, &[1; 32])
            .await
            .unwrap();
        assert_eq!(a, vec![1; 32]);
        // A second node racing with another fresh salt gets the first one.
        let b = store
            .analytics_salt(1, "visitor", 100, &[2; 32])
            .await
            .unwrap();
        assert_eq!(b, a);
        let c = store
            .analytics_salt(1, "visitor", 200, &[3; 32])
            .await
            .unwrap();
        assert_eq!(c, vec![3; 32]);
        store
            .analytics_salt(1, "daily", 100, &[4; 32])
            .await
            .unwrap();
        store
            .analytics_salt(2, "visitor", 100, &[5; 32])
            .await
            .unwrap();
        assert_eq!(
            store.analytics_salt_periods(1, "visitor").await.unwrap(),
            [100, 200]
        );
        assert_eq!(
            store
                .analytics_destroy_salts_before(1, "visitor", 200)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store.analytics_salt_periods(1, "visitor").await.unwrap(),
            [200]
        );
        // Every site with salts is listed (retention reaches sites no longer configured).
        assert_eq!(store.analytics_site_ids().await.unwrap(), [1, 2]);
        store
            .analytics_salt(7, "daily", 100, &[6; 32])
            .await
            .unwrap();
        assert_eq!(store.analytics_site_ids().await.unwrap(), [1, 2, 7]);
        store
            .analytics_destroy_salts_before(7, "daily", 200)
            .await
            .unwrap();
        assert_eq!(store.analytics_site_ids().await.unwrap(), [1, 2]);
        // Other kinds and sites are untouched.
        assert_eq!(
            store.analytics_salt_periods(1, "daily").await.unwrap(),
            [100]
        );
        assert_eq!(
            store.analytics_salt_periods(2, "visitor").await.unwrap(),
            [100]
        );
    })
    .await;
}

#[tokio::test]
async fn sqlite_fast_path_and_portable_path_store_the_same() {
    let fast = crate::support::TestStore::sqlite().await;
    let portable = crate::support::TestStore::sqlite().await;
    let batch = AnalyticsBatch {
        events: (0..40)
            .map(|i| event(20261101, 1_000 + i, i % 5, "https://ex.com/p"))
            .collect(),
        hourly: vec![hourly(20261101, 9, 2, 5)],
        dims: vec![dim(20261101, "https://ex.com/p", 3)],
        visitor_days: vec![
            (1, 20261101, 1, 9),
            (1, 20261101, 2, 10),
            (1, 20261101, 1, 11),
        ],
        sketches: vec![(1, 20261101, "n".into(), vec![9; 4])],
        chunks: Vec::new(),
    };
    fast.store.analytics_write_batch(&batch).await.unwrap();
    fast.store.analytics_write_batch(&batch).await.unwrap();
    portable
        .store
        .analytics_write_batch_portable(&batch)
        .await
        .unwrap();
    portable
        .store
        .analytics_write_batch_portable(&batch)
        .await
        .unwrap();
    for s in [&fast.store, &portable.store] {
        assert_eq!(s.analytics_event_count(1).await.unwrap(), 80);
        let t = s.analytics_totals(1, 20261101, 20261101).await.unwrap();
        assert_eq!((t.visits, t.pageviews, t.visitors), (4, 10, 2));
        assert_eq!(
            s.analytics_series(1, 20261101, 20261101, true)
                .await
                .unwrap()
                .iter()
                .map(|p| (p.hour, p.totals.visitors))
                .collect::<Vec<_>>(),
            [(Some(9), 1), (Some(10), 1)]
        );
        assert_eq!(
            s.analytics_top(1, "page", 20261101, 20261101, 5)
                .await
                .unwrap(),
            [("https://ex.com/p".to_string(), 6)]
        );
        assert_eq!(
            s.analytics_sketches(1, 20261101, 20261101).await.unwrap(),
            [vec![9; 4]]
        );
        assert_eq!(s.analytics_events_of(1, 2).await.unwrap().len(), 16);
    }
    fast.cleanup().await;
    portable.cleanup().await;
}

/// Events written before migration 0010 (one row each in `analytics_events`) stay readable,
/// erasable, counted and purged next to the chunks written since.
#[tokio::test]
async fn rows_written_before_chunks_stay_readable_erasable_and_purged() {
    on_each_engine(|store| async move {
        let old = event(20261101, 900, 3, "https://ex.com/old");
        sqlx::query(
            "INSERT INTO analytics_events (site_id, day, ts, visitor, visit_start, kind, url, title, \
             ev_value, ip_prefix, browser, device) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(old.site_id)
        .bind(old.day)
        .bind(old.ts)
        .bind(old.visitor)
        .bind(old.visit_start)
        .bind(old.kind)
        .bind(old.url.clone())
        .bind(old.title.clone())
        .bind(old.ev_value)
        .bind(old.ip_prefix.clone())
        .bind(old.browser.clone())
        .bind(old.device.clone())
        .execute(store.pool_for_tests())
        .await
        .unwrap();
        let new: Vec<EventRow> = (0..4)
            .map(|i| event(20261102, 1_000 + i, 3 + (i % 2), "https://ex.com/new"))
            .collect();
        store
            .analytics_write_batch(&AnalyticsBatch {
                events: new.clone(),
                visitor_days: vec![(1, 20261102, 3, 0), (1, 20261102, 4, 0)],
                ..AnalyticsBatch::default()
            })
            .await
            .unwrap();
        assert_eq!(store.analytics_event_count(1).await.unwrap(), 5);
        assert_eq!(store.analytics_oldest_day(1).await.unwrap(), Some(20261101));
        let mine = store.analytics_events_of(1, 3).await.unwrap();
        assert_eq!(mine, vec![old.clone(), new[0].clone(), new[2].clone()]);
        assert_eq!(store.analytics_erase_visitor(1, 3).await.unwrap(), 3);
        assert!(store.analytics_events_of(1, 3).await.unwrap().is_empty());
        // The other visitor's events in the rewritten chunk are intact.
        assert_eq!(
            store.analytics_events_of(1, 4).await.unwrap(),
            vec![new[1].clone(), new[3].clone()]
        );
        assert_eq!(store.analytics_event_count(1).await.unwrap(), 2);
        // Erasing the last visitor of a chunk deletes the chunk.
        assert_eq!(store.analytics_erase_visitor(1, 4).await.unwrap(), 2);
        assert_eq!(store.analytics_event_count(1).await.unwrap(), 0);
        assert_eq!(store.analytics_oldest_day(1).await.unwrap(), None);

        sqlx::query(
            "INSERT INTO analytics_events (site_id, day, ts, visitor, visit_start, kind) VALUES (1, 20261101, 5, 9, 5, 1)",
        )
        .execute(store.pool_for_tests())
        .await
        .unwrap();
        store
            .analytics_write_batch(&AnalyticsBatch {
                events: vec![event(20261101, 6, 9, "https://ex.com/x"), event(20261103, 7, 9, "https://ex.com/y")],
                ..AnalyticsBatch::default()
            })
            .await
            .unwrap();
        let purged = store.analytics_purge_through(1, 20261102).await.unwrap();
        assert_eq!(purged.events, 2);
        assert_eq!(store.analytics_event_count(1).await.unwrap(), 1);
        assert_eq!(store.analytics_oldest_day(1).await.unwrap(), Some(20261103));
    })
    .await;
}

/// The rights hooks find a visitor's days by probing the visitor-days' primary key for each day
/// with data (no index by visitor since migration 0011): every day is found, erasure removes the
/// visitor-days of every one of them, and other visitors and sites are untouched.
#[tokio::test]
async fn rights_hooks_find_and_erase_a_visitor_on_every_day() {
    on_each_engine(|store| async move {
        let days = [20261101, 20261103, 20261130];
        for (i, day) in days.iter().enumerate() {
            let mut events: Vec<EventRow> = (0..3)
                .map(|j| {
                    event(
                        *day,
                        1_000 * (i as i64 + 1) + j,
                        7 + j % 2,
                        "https://ex.com/a",
                    )
                })
                .collect();
            // The same pseudonym on another site.
            let mut other = event(*day, 500, 7, "https://ex.com/b");
            other.site_id = 2;
            events.push(other);
            store
                .analytics_write_batch(&AnalyticsBatch {
                    events,
                    visitor_days: vec![(1, *day, 7, 3), (1, *day, 8, 4), (2, *day, 7, 3)],
                    ..AnalyticsBatch::default()
                })
                .await
                .unwrap();
        }
        // A day with data but without the visitor.
        store
            .analytics_write_batch(&AnalyticsBatch {
                events: vec![event(20261102, 1_500, 8, "https://ex.com/a")],
                visitor_days: vec![(1, 20261102, 8, 5)],
                ..AnalyticsBatch::default()
            })
            .await
            .unwrap();
        let mine = store.analytics_events_of(1, 7).await.unwrap();
        assert_eq!(
            mine.iter().map(|e| e.day).collect::<Vec<_>>(),
            [20261101, 20261101, 20261103, 20261103, 20261130, 20261130]
        );
        assert_eq!(store.analytics_erase_visitor(1, 7).await.unwrap(), 6);
        assert!(store.analytics_events_of(1, 7).await.unwrap().is_empty());
        assert_eq!(
            store
                .analytics_daily_unique_visitors(1, 20261101, 20261130)
                .await
                .unwrap(),
            [(20261101, 1), (20261102, 1), (20261103, 1), (20261130, 1)]
        );
        assert_eq!(store.analytics_events_of(1, 8).await.unwrap().len(), 4);
        assert_eq!(store.analytics_events_of(2, 7).await.unwrap().len(), 3);
        assert_eq!(
            store
                .analytics_unique_visitors(2, 20261101, 20261130)
                .await
                .unwrap(),
            1
        );
    })
    .await;
}
