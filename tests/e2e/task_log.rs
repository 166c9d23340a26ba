//! The SQLite task log under the real driver: a task is created with its first wave starting, a
//! drive's commits log which runs' changes made the data instead of the data, and every commit of
//! every RetailMax scenario reads back exactly as the driver had it (the task, and each starting
//! run's input, which a crash would re-run it on).

use serde_json::Value;
use whenever::demo::scenarios;
use whenever::scheduler::{Checkpoint, CheckpointError, Commit};
use whenever::store::sqlite::SqliteStore;
use whenever::store::{Store, TaskSave};
use whenever::task::{Task, TaskStatus};
use whenever::{Host, HostOptions};

/// Commits through the SQLite store and reads every commit back.
struct ReadBack {
    store: SqliteStore,
    revision: u64,
    commits: usize,
    inputs_checked: usize,
}

impl ReadBack {
    async fn save(&mut self, task: &Task, commit: Commit<'_>) -> Result<(), CheckpointError> {
        self.revision = self
            .store
            .save_task(TaskSave::of_commit(task, self.revision, commit))
            .await
            .map_err(|e| CheckpointError(e.to_string()))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Checkpoint for ReadBack {
    async fn commit(&mut self, task: &Task, commit: Commit<'_>) -> Result<(), CheckpointError> {
        self.save(task, commit).await?;
        self.commits += 1;
        let stored = self.store.get_task(&task.id).await.expect("read").expect("stored");
        let at = format!("{} after commit {}", task.id, self.commits);
        assert_eq!(stored.revision, self.revision, "{at}");
        assert_eq!(stored.task.data, task.data, "{at}: the data");
        assert_eq!(stored.task.progress, task.progress, "{at}: the progress");
        assert_eq!(
            (stored.task.status, &stored.task.tags),
            (task.status, &task.tags),
            "{at}"
        );
        assert_eq!(json(&stored.task.runs), json(&task.runs), "{at}: the runs");
        if let Some(input) = commit.input {
            let open = self.store.interrupted_runs(&task.id).await.expect("read");
            for id in commit.starting {
                let run = open.iter().find(|r| r.run_id == *id).expect("a starting run is open");
                assert_eq!(&run.input, input, "{at}: the input of run {id}");
                self.inputs_checked += 1;
            }
        }
        Ok(())
    }

    fn journal(&self, _: &Task, _: u64) -> Option<std::sync::Arc<dyn whenever::runtime::CallJournal>> {
        None
    }
}

fn json(runs: &[whenever::task::RunRecord]) -> Value {
    serde_json::to_value(runs).expect("encodes")
}

#[tokio::test]
async fn every_commit_of_every_scenario_reads_back_as_the_driver_had_it() {
    let host = Host::start(&HostOptions::default()).await.expect("host");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("log.db");
    let store = SqliteStore::open(&db, Default::default()).expect("store");
    let mut log = ReadBack {
        store,
        revision: 0,
        commits: 0,
        inputs_checked: 0,
    };
    let mut total: i64 = 0;
    let mut patches: i64 = 0;
    for scenario in scenarios() {
        let mut task = Task::with_id(format!("log-{}", scenario.name), scenario.order.clone());
        // As the service creates a task: its first wave recorded, starting, with it.
        let first = host.scheduler.first_wave(&mut task);
        assert!(!first.is_empty(), "{}: the order starts steps", scenario.name);
        let ids: Vec<u64> = first.iter().map(|run| run.run_id).collect();
        log.revision = log.store.create_task_starting(&task, &ids).await.expect("created");
        let open = log.store.interrupted_runs(&task.id).await.expect("read");
        assert_eq!(open.len(), ids.len(), "{}: the first wave is on record", scenario.name);
        assert!(open.iter().all(|run| run.input == task.data));
        host.scheduler
            .drive_durable(&mut task, first, &mut log, &mut |_| {})
            .await
            .expect("driven");
        for action in &scenario.actions {
            if task.status != TaskStatus::Waiting {
                break;
            }
            // As the service resumes a waiting task: the patched task saved whole, then driven.
            action.apply(&mut task);
            task.status = TaskStatus::Running;
            let save = TaskSave {
                task: &task,
                expected_revision: log.revision,
                runs: &[],
                starting: &[],
                input: None,
                data_text: None,
                applied: None,
            };
            log.revision = log.store.save_task(save).await.expect("patched");
            patches += 1;
            host.scheduler
                .drive_durable(&mut task, Vec::new(), &mut log, &mut |_| {})
                .await
                .expect("driven");
        }
        assert_eq!(task.status, scenario.expected, "{}: {:?}", scenario.name, task.message);
        total += 1;
    }
    assert_eq!(total as usize, scenarios().len());
    assert!(
        log.inputs_checked > log.commits / 2,
        "{} inputs checked",
        log.inputs_checked
    );

    // The log holds the whole data only where a person's patch changed it; every record a drive
    // committed lists its runs instead.
    let conn = rusqlite::Connection::open(&db).expect("open");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
    let whole = count("SELECT count(*) FROM task_log WHERE data IS NOT NULL");
    let listed = count("SELECT count(*) FROM task_log WHERE applied IS NOT NULL");
    let drives = count("SELECT count(*) FROM task_log WHERE status != 'running'");
    let records = count("SELECT count(*) FROM task_log");
    assert_eq!(drives, total + patches, "one settled record per drive");
    assert_eq!(whole, patches, "{whole} records hold the data");
    assert_eq!(
        listed,
        records - patches,
        "{listed} of {records} records list their runs"
    );
}
