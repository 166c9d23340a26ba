//! Several `whenever serve` processes sharing one PostgreSQL database (each test in its own
//! schema of `$WHENEVER_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! - Three hosts share a load of RetailMax orders delivered through the webhook; one is killed
//!   with SIGKILL while it holds running tasks. Every order must complete exactly once, with
//!   exactly one successful Stripe charge, the dead host's tasks taken over by the others once its
//!   lease expired, and every connector result it had journaled replayed, not called again.
//! - A step deployed through one host is loaded by the others and runs there, and by a host
//!   starting meanwhile (held, deterministically, at the point its start is most exposed).
//! - A host told to stop (SIGTERM) whose grace runs out releases its tasks, and another host
//!   takes them over at once instead of after the lease.
//! - One webhook delivery sent to two hosts at once with its delivery id makes one task.
//! - A host stands aside while a host of a newer version serves, and a starting host registers
//!   its version only once its steps are ready and it claims.
//! - A second process given a running host's `host_id` is refused; one restarted under its name
//!   after a crash waits for the dead one's registration to lapse.
//! - Saves the database refuses for a while (disk full), connections it cuts under load, and a
//!   table it keeps locked: orders wait and complete once it takes writes again, and `/readyz`
//!   tells a balancer meanwhile.
//!
//! Without a server the tests print "skipped: no PostgreSQL at ..." and pass.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{FakeInventory, ServeProcess, assert_each_step_ran_once_ok, refused, successful_calls, whenever_binary};
use whenever::runtime::ConnectorCallRecord;
use whenever::store::postgres::PostgresStore;
use whenever::store::scratch_schema::ScratchSchema;
use whenever::store::{Store, TaskQuery};
use whenever::task::TaskStatus;

/// The most connections each test host opens to PostgreSQL.
const HOST_CONNECTIONS: usize = 10;

fn test_url() -> String {
    std::env::var("WHENEVER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema for one test, with a directory for the hosts' config.
struct Schema {
    scratch: ScratchSchema,
    dir: tempfile::TempDir,
}

impl Schema {
    async fn create(test: &str) -> Option<Schema> {
        match ScratchSchema::create(&test_url(), &format!("t_{test}")).await {
            Ok(scratch) => Some(Schema {
                scratch,
                dir: tempfile::tempdir().expect("tempdir"),
            }),
            Err(e) => {
                eprintln!("{test}: skipped: {e}");
                None
            }
        }
    }

    /// A config file with a short lease, so a dead host's tasks are taken over quickly.
    fn config(&self) -> String {
        self.config_of("[cluster]\nlease_ms = 3000\npoll_ms = 250\nclaim_batch = 4\n")
    }

    /// A config file with this text, each host opening at most [`HOST_CONNECTIONS`] to the
    /// server: the tests run two at a time with up to three hosts each, and the server takes
    /// 100 connections by default (27 a host, the default, would go over on a slow machine,
    /// where the pools fill up).
    fn config_of(&self, text: &str) -> String {
        let path = self.dir.path().join("cluster.toml");
        let text = format!("[store]\npostgres_connections = {HOST_CONNECTIONS}\n{text}");
        std::fs::write(&path, text).expect("config");
        path.display().to_string()
    }

    /// Starts `n` hosts on the schema, in parallel.
    fn start_hosts(&self, n: usize) -> Vec<(ServeProcess, String)> {
        self.start_hosts_with(n, &self.config())
    }

    /// Starts `n` hosts on the schema with this config file, in parallel.
    fn start_hosts_with(&self, n: usize, config: &str) -> Vec<(ServeProcess, String)> {
        self.start_hosts_on(n, self.scratch.url(), config)
    }

    /// The schema's URL with the schema's name as the connections' `application_name`: this
    /// test's hosts' connections, and no other test's, are found in `pg_stat_activity` by it.
    fn url_named(&self) -> String {
        format!("{}&application_name={}", self.scratch.url(), self.scratch.name())
    }

    /// Starts `n` hosts on database `url` with this config file, in parallel.
    fn start_hosts_on(&self, n: usize, url: &str, config: &str) -> Vec<(ServeProcess, String)> {
        let config = config.to_string();
        let db = std::path::PathBuf::from(url);
        std::thread::scope(|scope| {
            let starting: Vec<_> = (0..n)
                .map(|_| scope.spawn(|| ServeProcess::start(&db, &["--config", &config])))
                .collect();
            starting
                .into_iter()
                .map(|h| {
                    let host = h.join().expect("a host starts");
                    let id = host_id(&host);
                    (host, id)
                })
                .collect()
        })
    }

    async fn count(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
        let name = self.scratch.name();
        let sql = sql
            .replace("tasks", &format!("{name}.tasks"))
            .replace("runs", &format!("{name}.runs"));
        self.scratch
            .admin()
            .query_one(&sql, params)
            .await
            .expect("counts")
            .get(0)
    }

    /// A store on the schema, migrated, with `sql` run on it then (the triggers a test sets).
    async fn migrated_with(&self, sql: &str) -> PostgresStore {
        let store = PostgresStore::connect(self.scratch.url()).await.expect("migrated");
        self.scratch.admin().batch_execute(sql).await.expect("set up");
        store
    }

    async fn drop_schema(self) {
        self.scratch.drop_schema().await;
    }
}

/// The host id a server announced on stderr.
fn host_id(server: &ServeProcess) -> String {
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains(" shares database "))
        .unwrap_or_else(|| panic!("no host line:\n{log}"));
    line.split("host ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

/// The seed's order with its own order id.
fn order(i: usize) -> Value {
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!(format!("ORD-CLUSTER-{i:04}"));
    order
}

/// Delivers orders `range` through `POST /v1/hooks/checkout` from `senders` concurrent senders,
/// round-robin over `hosts`; returns (order, task id) of each.
async fn deliver(hosts: &[&ServeProcess], range: std::ops::Range<usize>, senders: usize) -> Vec<(usize, String)> {
    let targets: Vec<(reqwest::Client, String)> = hosts.iter().map(|h| (h.http.clone(), h.base.clone())).collect();
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (targets, next, end) = (targets.clone(), next.clone(), range.end);
        set.spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= end {
                    return accepted;
                }
                let (http, base) = &targets[i % targets.len()];
                let response = http
                    .post(format!("{base}/v1/hooks/checkout"))
                    .body(order(i).to_string())
                    .send()
                    .await
                    .expect("sent");
                let status = response.status().as_u16();
                let task: Value = response.json().await.expect("JSON");
                assert_eq!(status, 201, "delivery of order {i} accepted: {task}");
                accepted.push((i, task["id"].as_str().expect("id").to_string()));
            }
        });
    }
    let mut accepted = Vec::new();
    while let Some(done) = set.join_next().await {
        accepted.extend(done.expect("sender"));
    }
    accepted
}

const ORDERS: usize = 90;
const BEFORE_KILL: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_orders_and_a_killed_hosts_tasks_are_taken_over() {
    let Some(schema) = Schema::create("share").await else {
        return;
    };
    let started = std::time::Instant::now();
    // A run's journaled results outlive a kill only if the kill lands between a call's answer and
    // the run's end, which a kill timed by the load alone rarely does (runs take milliseconds).
    // So the inventory service is a fake started here: it holds the first reservations the
    // victim asks for unanswered, and the victim is killed once one is held, its run's stock
    // check journaled.
    let inventory = FakeInventory::default();
    inventory.hold.store(2, Ordering::SeqCst);
    let address = inventory.start().await;
    // The victim's reservations go to the fake's held path; the survivors' are answered at once.
    let config = |host: &str, segment: &str| {
        let path = schema.dir.path().join(format!("{host}.toml"));
        let text = format!(
            "[store]\npostgres_connections = {HOST_CONNECTIONS}\n\
             [cluster]\nlease_ms = 3000\npoll_ms = 250\nclaim_batch = 4\n\
             [connectors.inventorySystem]\nkind = \"http\"\nbase_url = \"http://{address}/{segment}\"\n\
             timeout_ms = 60000\nretries = 0\n"
        );
        std::fs::write(&path, text).expect("config");
        path.display().to_string()
    };
    let (survivor_config, victim_config) = (config("survivor", "answered"), config("victim", "held"));
    let (hosts, mut victim) = std::thread::scope(|scope| {
        let victim = scope.spawn(|| schema.start_hosts_with(1, &victim_config));
        let survivors = schema.start_hosts_with(2, &survivor_config);
        (survivors, victim.join().expect("the victim starts"))
    });
    let (victim, victim_id) = victim.pop().expect("the victim");
    let survivors: Vec<&ServeProcess> = hosts.iter().map(|(h, _)| h).collect();
    let mut everyone = survivors.clone();
    everyone.push(&victim);
    eprintln!("cluster test: 3 hosts up in {:?}", started.elapsed());

    // The first orders go to all three hosts; the victim is killed while it holds running tasks.
    let mut accepted = deliver(&everyone, 0..BEFORE_KILL, 6).await;
    let mut held_at_death = 0;
    for _ in 0..400 {
        held_at_death = schema
            .count(
                // A lease's owner is the process: `host_id/instance`.
                "SELECT count(*) FROM tasks WHERE status = 'running' AND starts_with(owner, $1 || '/')",
                &[&victim_id],
            )
            .await;
        if held_at_death > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        held_at_death > 0,
        "the victim held running tasks; log:\n{}",
        victim.stderr()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while inventory.held.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the victim never asked for a reservation; log:\n{}",
            victim.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    victim.kill();
    inventory.let_go();
    // The database may still finish a statement the victim sent just before it died.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = PostgresStore::connect(schema.scratch.url()).await.expect("connects");
    let mut orphans = Vec::new();
    // By call number: `None` for a call not journaled.
    let mut journaled: BTreeMap<(String, u64), Vec<Option<ConnectorCallRecord>>> = BTreeMap::new();
    let client_rows = schema
        .scratch
        .admin()
        .query(
            &format!(
                "SELECT id FROM {}.tasks WHERE status = 'running' AND starts_with(owner, $1 || '/')",
                schema.scratch.name()
            ),
            &[&victim_id],
        )
        .await
        .expect("reads");
    for row in client_rows {
        let id: String = row.get(0);
        for run in store.interrupted_runs(&id).await.expect("reads") {
            if !run.journal.is_empty() {
                journaled.insert((id.clone(), run.run_id), run.journal);
            }
        }
        orphans.push(id);
    }

    // The rest of the load goes to the survivors.
    accepted.extend(deliver(&survivors, BEFORE_KILL..ORDERS, 6).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running = schema
            .count("SELECT count(*) FROM tasks WHERE status = 'running'", &[])
            .await;
        if running == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{running} tasks still running; logs:\n{}\n{}",
            survivors[0].stderr(),
            survivors[1].stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();

    // Every drive of a survivor — the tasks it claimed, the victim's it took over — ran on its
    // drive threads, none on the runtime's workers.
    let mut driven_by_survivors = 0;
    for survivor in &survivors {
        let counts = survivor.metric_series("whenever_drives_started_total{thread=\"").await;
        assert!(
            !counts.is_empty() && counts.iter().all(|(thread, _)| thread.starts_with("whenever-drive-")),
            "{counts:?}"
        );
        driven_by_survivors += counts.iter().map(|(_, n)| n).sum::<i64>();
    }
    assert!(
        driven_by_survivors >= orphans.len() as i64,
        "the survivors drove the {} orphans at least: {driven_by_survivors}",
        orphans.len()
    );

    // Every order is one task, completed once, charged once.
    let page = store
        .list_tasks(&TaskQuery {
            status: None,
            tag: None,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("lists");
    assert_eq!(page.tasks.len(), ORDERS, "one task per delivered order");
    let mut orders = BTreeSet::new();
    let mut charge_keys = BTreeSet::new();
    let mut replayed = BTreeSet::new();
    for summary in &page.tasks {
        let task = store.get_task(&summary.id).await.expect("reads").expect("exists").task;
        let order_id = task.data["order"]["id"].as_str().unwrap_or_default().to_string();
        assert!(orders.insert(order_id.clone()), "order {order_id} is one task");
        assert_eq!(task.status, TaskStatus::Completed, "{order_id}: {:?}", task.message);
        assert_eq!(task.data["order"]["status"], json!("processing_complete"), "{order_id}");
        assert_each_step_ran_once_ok(&task, &order_id);
        for run in &task.runs {
            for (index, call) in run.connector_calls.iter().enumerate() {
                if call.replayed {
                    replayed.insert((task.id.clone(), run.id, index));
                }
            }
        }
        let charges = successful_calls(&task, "stripe", "charge");
        assert_eq!(
            charges.len(),
            1,
            "{order_id}: exactly one successful charge, got {:?}",
            charges.keys()
        );
        let all_charges: usize = task
            .runs
            .iter()
            .flat_map(|r| &r.connector_calls)
            .filter(|c| c.connector == "stripe" && c.method == "charge")
            .count();
        // One charge record: made here, or made by the dead host, journaled and replayed here.
        assert_eq!(all_charges, 1, "{order_id}: Stripe was called once");
        charge_keys.extend(charges.keys().map(|k| k.to_string()));
    }
    assert_eq!(orders.len(), ORDERS);
    assert_eq!(charge_keys.len(), ORDERS, "every charge has its own idempotency key");
    let delivered: BTreeSet<String> = accepted.iter().map(|(i, _)| format!("ORD-CLUSTER-{i:04}")).collect();
    assert_eq!(orders, delivered, "exactly the delivered orders");
    // What the victim had journaled was replayed by the host that took over, not called again.
    let mut expected_replays = BTreeSet::new();
    for ((task_id, run_id), calls) in &journaled {
        let task = store.get_task(task_id).await.expect("reads").expect("exists").task;
        let run = task
            .runs
            .iter()
            .find(|r| r.id == *run_id)
            .expect("the interrupted run is in history");
        for (index, call) in calls
            .iter()
            .enumerate()
            .filter_map(|(i, call)| Some((i, call.as_ref()?)))
        {
            let seen = &run.connector_calls[index];
            assert_eq!(
                (&seen.result, &seen.idempotency_key),
                (&call.result, &call.idempotency_key)
            );
            assert!(
                seen.replayed,
                "{task_id} run {run_id} call {index} was replayed; survivors' logs:\n{}\n{}",
                survivors[0].stderr(),
                survivors[1].stderr()
            );
            expected_replays.insert((task_id.clone(), *run_id, index));
        }
    }
    assert!(
        !expected_replays.is_empty(),
        "the victim had journaled the stock check of the run held at its reservation"
    );
    assert!(expected_replays.is_subset(&replayed));

    let owners = schema
        .count("SELECT count(*) FROM tasks WHERE owner IS NOT NULL", &[])
        .await;
    assert_eq!(owners, 0, "settled tasks hold no lease");
    let lost: usize = survivors.iter().map(|h| h.stderr().matches("lease lost").count()).sum();
    if lost == 0 {
        // No live host lost a lease: the only replays are the dead host's journal.
        assert_eq!(
            replayed, expected_replays,
            "only what the dead host journaled was replayed"
        );
        for host in &survivors {
            assert!(
                !host.stderr().contains("changed meanwhile"),
                "no two hosts drove one task:\n{}",
                host.stderr()
            );
        }
    }
    for line in survivors
        .iter()
        .flat_map(|h| h.stderr().lines().map(String::from).collect::<Vec<_>>())
    {
        if line.contains("apart") {
            eprintln!("cluster test: survivor: {line}");
        }
    }
    eprintln!(
        "cluster test: {ORDERS} orders on 3 hosts (one killed holding {held_at_death} running tasks, {} runs with \
         {} journaled calls) in {elapsed:?}; {} calls replayed; {lost} leases lost by live hosts",
        journaled.len(),
        journaled
            .values()
            .map(|calls| calls.iter().flatten().count())
            .sum::<usize>(),
        replayed.len()
    );
    drop(hosts);
    schema.drop_schema().await;
}

/// A step the operator's config narrows is loaded once on each host: the reload that follows
/// every deploy compares versions, not the narrowed manifest with the stored one (which always
/// differed there, so each later deploy loaded it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_the_config_narrows_is_not_loaded_again_at_each_deploy() {
    let Some(schema) = Schema::create("narrowed").await else {
        return;
    };
    let config = schema.config_of("[cluster]\nlease_ms = 3000\npoll_ms = 250\n[steps.write-a]\nconnectors = []\n");
    let hosts = schema.start_hosts_with(2, &config);
    let (first, second) = (&hosts[0].0, &hosts[1].0);
    let put = async |name: &str, step: &whenever_step_artifacts::StepFiles| {
        let component = std::fs::read(step.component).expect("component");
        let manifest = "connectors%20%3D%20%5B%22slackCom%22%5D";
        let path = format!("/v1/steps/{name}?manifest={manifest}");
        first.call(reqwest::Method::PUT, &path, Some(component)).await
    };
    let (status, deployed) = put("write-a", &whenever_step_artifacts::testing::WRITE_A).await;
    assert!(status == 200 || status == 201, "{status} {deployed}");
    second.until_logged("loaded step write-a version");
    // Two more deploys of another step: each makes every host read the store's steps again.
    for step in [
        whenever_step_artifacts::testing::WRITE_B,
        whenever_step_artifacts::testing::COMPLETES,
    ] {
        let (status, deployed) = put("other", &step).await;
        assert!(status == 200 || status == 201, "{status} {deployed}");
        let version = deployed["version"].clone();
        second
            .until("the other step to be loaded", Duration::from_secs(20), || async {
                second.get("/v1/steps/other").await.1["version"] == version
            })
            .await;
    }
    let loads = second.stderr().matches("loaded step write-a version").count();
    assert_eq!(loads, 1, "{}", second.stderr());
    drop(hosts);
    schema.drop_schema().await;
}

/// A deploy is stored before the waiting tasks are re-evaluated against it: should its host die
/// in between (here: the version is put in the store by no host at all), the hosts that hear of
/// the new version re-evaluate them, and the tasks that waited for it run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_waiting_for_a_version_no_host_re_evaluated_are_re_evaluated_by_the_others() {
    use sha2::Digest as _;
    let Some(schema) = Schema::create("reevaluate").await else {
        return;
    };
    let hosts = schema.start_hosts(2);
    let (host, _) = &hosts[0];
    let mut ids = Vec::new();
    for n in 0..4 {
        let (status, task) = host.post("/v1/tasks?wait=20000", &json!({"start": true, "n": n})).await;
        assert_eq!((status, &task["status"]), (201, &json!("waiting")), "{task}");
        ids.push(task["id"].as_str().expect("id").to_string());
    }
    let step = whenever_step_artifacts::testing::WRITE_A;
    let component = std::fs::read(step.component).expect("component");
    let manifest = whenever::runtime::StepManifest::default();
    let digest = hex::encode(sha2::Sha256::digest(&component));
    let version = whenever::runtime::version_id(&digest, &manifest);
    let store = PostgresStore::connect(schema.scratch.url()).await.expect("connects");
    let stored = whenever::store::StepVersion {
        name: step.name.into(),
        version: version.clone(),
        digest,
        component,
        manifest,
        deployed_at: chrono::Utc::now(),
        deployed_by: Some("a host that died before it re-evaluated".into()),
    };
    store.put_step_version(&stored, true).await.expect("stored");
    for id in &ids {
        host.until("the waiting task to run write-a", Duration::from_secs(30), || async {
            let (_, task) = host.get(&format!("/v1/tasks/{id}")).await;
            task["data"]["a"] == json!("A") && task["status"] == json!("waiting")
        })
        .await;
        let (_, task) = host.get(&format!("/v1/tasks/{id}")).await;
        let ran: Vec<&Value> = task["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| &r["version"])
            .collect();
        assert_eq!(
            ran,
            [&json!(version)],
            "write-a ran once, whichever hosts re-evaluated: {task}"
        );
    }
    drop(hosts);
    schema.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_deployed_through_one_host_runs_on_the_others() {
    let Some(schema) = Schema::create("deploy").await else {
        return;
    };
    let mut hosts = schema.start_hosts(3);
    let (first, _) = hosts.remove(0);
    let component = std::fs::read(whenever_step_artifacts::testing::WRITE_A.component).expect("component");
    let (status, deployed) = first
        .call(reqwest::Method::PUT, "/v1/steps/write-a", Some(component))
        .await;
    assert!(status == 200 || status == 201, "{status} {deployed}");
    let version = deployed["version"].as_str().expect("version").to_string();
    for (host, _) in &hosts {
        host.until("the step to be loaded", Duration::from_secs(20), || async {
            let (status, step) = host.get("/v1/steps/write-a").await;
            status == 200 && step["version"] == json!(version)
        })
        .await;
    }
    // The deploying host is gone: the step runs on the others.
    first.kill();
    let ids: Vec<&String> = hosts.iter().map(|(_, id)| id).collect();
    for (i, (host, _)) in hosts.iter().enumerate() {
        for n in 0..3 {
            let (status, task) = host.post("/v1/tasks?wait=20000", &json!({"start": true, "n": n})).await;
            assert_eq!(status, 201, "{task}");
            assert_eq!(task["status"], json!("waiting"), "host {i}: {task}");
            assert_eq!(task["data"]["a"], json!("A"), "host {i}: write-a ran: {task}");
            let runs = task["runs"].as_array().expect("runs");
            assert!(
                runs.iter()
                    .any(|r| r["step"] == json!("write-a") && r["version"] == json!(version))
            );
            // Each run names the host that ran it: one of those still up.
            assert!(
                runs.iter().all(|r| ids.iter().any(|id| r["host"] == json!(id))),
                "{task}"
            );
        }
    }
    // Each host times its drives' saves: at least one for each of the six tasks, on whichever
    // host claimed it (a task created through one host may be driven by another).
    // PostgreSQL commits each save by itself, so there are no group commits to count.
    let mut saves = 0;
    for (host, _) in &hosts {
        saves += host.metric("whenever_task_save_duration_seconds_count").await;
        let (_, metrics) = host.get("/metrics").await;
        let metrics = metrics.as_str().expect("text");
        assert!(!metrics.contains("whenever_store_commits_total"), "{metrics}");
    }
    assert!(saves >= 6, "{saves} saves timed for six tasks");
    // A removal through one host reaches the others too.
    let (second, _) = &hosts[0];
    let (status, _) = second.call(reqwest::Method::DELETE, "/v1/steps/write-a", None).await;
    assert!(status == 200 || status == 204, "removed: {status}");
    let (third, _) = &hosts[1];
    third
        .until(
            "the removal to reach the other host",
            Duration::from_secs(20),
            || async { third.get("/v1/steps/write-a").await.0 == 404 },
        )
        .await;
    drop(hosts);
    schema.drop_schema().await;
}

/// A step deployed through one host while another starts serves on the starting host once it
/// has started, although the deploy's notice came before it listened. The start is held,
/// deterministically, where it registers the format it writes (a trigger waits there for an
/// advisory lock the test holds), after it loaded the steps the store served until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_deployed_while_a_host_starts_serves_there_once_it_has_started() {
    const HELD: i64 = 4242;
    let Some(schema) = Schema::create("deploy_while_starting").await else {
        return;
    };
    let (first, _) = schema.start_hosts(1).remove(0);
    let name = schema.scratch.name().to_string();
    let admin = schema.scratch.admin();
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION {name}.hold_late() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF NEW.host = 'late' AND NEW.format > 0 THEN PERFORM pg_advisory_xact_lock({HELD}); END IF;
                 RETURN NEW;
               END $$;
             CREATE TRIGGER hold_late BEFORE INSERT OR UPDATE ON {name}.hosts
               FOR EACH ROW EXECUTE FUNCTION {name}.hold_late();
             SELECT pg_advisory_lock({HELD});"
        ))
        .await
        .expect("the late host's start held");
    let late_config = schema.config_of("[cluster]\nhost_id = \"late\"\nlease_ms = 3000\npoll_ms = 250\n");
    let db = std::path::PathBuf::from(schema.scratch.url());
    let starting = std::thread::spawn(move || ServeProcess::start(&db, &["--config", &late_config]));
    let waiting = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted",
                &[&(HELD as u32)],
            )
            .await
            .expect("locks read")
            .get::<_, i64>(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while waiting().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the late host never reached its format"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Held: the late host loaded the steps the store serves. One more is deployed now.
    let component = std::fs::read(whenever_step_artifacts::testing::WRITE_A.component).expect("component");
    let (status, deployed) = first
        .call(reqwest::Method::PUT, "/v1/steps/write-a", Some(component))
        .await;
    assert!(status == 200 || status == 201, "{status} {deployed}");
    let version = deployed["version"].clone();
    admin
        .batch_execute(&format!("SELECT pg_advisory_unlock({HELD})"))
        .await
        .expect("released");
    let late = starting.join().expect("the late host starts");
    // At once, before any claim or notice could have brought it.
    let (status, step) = late.get("/v1/steps/write-a").await;
    assert_eq!(status, 200, "{step}\n{}", late.stderr());
    assert_eq!(step["version"], version, "{step}");
    let (status, task) = late.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["data"]["a"], json!("A"), "write-a ran: {task}");
    drop((first, late));
    schema.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_hosts_tasks_are_taken_over_without_waiting_for_its_lease() {
    let Some(schema) = Schema::create("stop").await else {
        return;
    };
    // A lease far longer than the test may wait: only a released task is taken over in time.
    let config = schema.config_of("[cluster]\nlease_ms = 120000\npoll_ms = 250\n[server]\nshutdown_grace_ms = 200\n");
    let mut hosts = schema.start_hosts_with(2, &config);
    // The looping test step, each run under way for 4 s before it fails at its deadline.
    let component = std::fs::read(whenever_step_artifacts::testing::INFINITE_LOOP.component).expect("component");
    let manifest = "connectors%20%3D%20%5B%5D%0A%5Blimits%5D%0Atimeout_ms%20%3D%204000%0A";
    let (status, deployed) = hosts[0]
        .0
        .call(
            reqwest::Method::PUT,
            &format!("/v1/steps/infinite-loop?manifest={manifest}"),
            Some(component),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {deployed}");
    hosts[1]
        .0
        .until("the step to be loaded", Duration::from_secs(20), || async {
            hosts[1].0.get("/v1/steps/infinite-loop").await.0 == 200
        })
        .await;
    let (status, task) = hosts[0].0.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().expect("id").to_string();
    let started = std::time::Instant::now();
    let driver = loop {
        let mut driving = None;
        for (i, (host, _)) in hosts.iter().enumerate() {
            if host.drives_under_way().await == 1 {
                driving = Some(i);
            }
        }
        if let Some(i) = driving {
            break i;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no host drives the task");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let (mut stopping, stopping_id) = hosts.remove(driver);
    let (other, other_id) = hosts.remove(0);

    stopping.signal("TERM");
    let status = stopping.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}; log:\n{}", stopping.stderr());
    stopping.until_logged(&format!("task {id}: released for another host"));
    stopping.until_logged(
        "stopped (drives under way: 1, finished: 0; tasks left running: 1; another host takes them over)",
    );
    other
        .until(
            "the other host to take the task over",
            Duration::from_secs(30),
            || async { other.drives_under_way().await == 1 },
        )
        .await;
    other
        .until("the task to settle", Duration::from_secs(30), || async {
            other.get(&format!("/v1/tasks/{id}")).await.1["status"] == json!("failed")
        })
        .await;
    let (_, settled) = other.get(&format!("/v1/tasks/{id}")).await;
    let runs = settled["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "the interrupted run was re-run in place: {settled}");
    assert_eq!(runs[0]["outcome"]["error"]["kind"], json!("deadline"), "{settled}");
    // The record names the host that ran it last, not the one stopped under it.
    assert_ne!(stopping_id, other_id);
    assert_eq!(runs[0]["host"], json!(other_id), "{settled}");
    drop(other);
    schema.drop_schema().await;
}

/// Two processes given one `host_id` would each take the other's tasks for their own. The second
/// is refused (exit 2) once it has waited a lease and a half for the first to lapse, which a
/// process renewing its registration never does. A host stopped with SIGTERM frees its name at
/// once; one killed leaves it to lapse, and its next process waits for that, then starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_given_a_running_hosts_host_id_is_refused() {
    let Some(schema) = Schema::create("same_id").await else {
        return;
    };
    // A lease long enough that a loaded machine does not starve the first host's renewals.
    let config = schema.config_of("[cluster]\nhost_id = \"twin\"\nlease_ms = 3000\npoll_ms = 250\n");
    let (mut first, id) = schema.start_hosts_with(1, &config).remove(0);
    assert_eq!(id, "twin");
    // Refused after 4.5 s.
    let second = start_refused(schema.scratch.url(), &config).await;
    refused(&second, 2, "host_id \"twin\" is in use by another running host");
    let (status, _) = first.get("/readyz").await;
    assert_eq!(status, 200, "the first host serves on: {}", first.stderr());

    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).success(), "{}", first.stderr());
    // A lease far longer than a start takes: the next process after the crash surely finds the
    // dead one's registration fresh, and waits for it (up to 15 s).
    let config = schema.config_of("[cluster]\nhost_id = \"twin\"\nlease_ms = 10000\npoll_ms = 250\n");
    let (next, _) = schema.start_hosts_with(1, &config).remove(0);
    assert!(
        !next.stderr().contains("waiting up to"),
        "a stopped host's name is free at once: {}",
        next.stderr()
    );
    next.kill();
    let (after_crash, _) = schema.start_hosts_with(1, &config).remove(0);
    assert!(
        after_crash.stderr().contains("is in use by another running host")
            && after_crash.stderr().contains("waiting up to"),
        "{}",
        after_crash.stderr()
    );
    let (status, _) = after_crash.get("/readyz").await;
    assert_eq!(status, 200, "{}", after_crash.stderr());
    drop(after_crash);
    schema.drop_schema().await;
}

/// A process paused past its lease (a frozen VM, a stopped container) may find its `host_id`
/// taken by another process on its return. Under one name the two would take each other's
/// tasks for their own, a takeover not even moving the task's revision on; so the one that lost
/// its name claims and drives nothing, and says it is not ready, until it can take the name back
/// once the other is gone. Meanwhile it still takes requests, which the holder drives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_host_id_another_took_drives_nothing_until_the_name_is_free() {
    let Some(schema) = Schema::create("name_taken").await else {
        return;
    };
    // A lease long enough that a loaded machine does not starve the holder's renewals.
    let config = schema.config_of("[cluster]\nhost_id = \"twin\"\nlease_ms = 4000\npoll_ms = 250\n");
    let (paused, _) = schema.start_hosts_with(1, &config).remove(0);
    paused.signal("STOP");
    // Started while the first is paused: it takes the name once the first's registration lapsed.
    let (holder, _) = schema.start_hosts_with(1, &config).remove(0);
    paused.signal("CONT");
    paused
        .until(
            "the paused process to find its name taken",
            Duration::from_secs(30),
            || async {
                let (status, ready) = paused.get("/readyz").await;
                status == 503 && ready["host_id"] == json!("taken")
            },
        )
        .await;
    paused.until_logged("another process took host_id twin while this one was not seen for a lease");
    let (status, ready) = holder.get("/readyz").await;
    assert_eq!((status, &ready["host_id"]), (200, &json!("ok")), "{}", holder.stderr());

    let before = drives_started(&paused).await;
    let delivered = deliver(&[&paused], 0..4, 2).await;
    all_completed(&holder, &delivered).await;
    assert_eq!(
        drives_started(&paused).await,
        before,
        "the process without its name drove nothing"
    );

    // Once the holder is gone and its registration lapsed, the name is the first's again.
    holder.kill();
    paused
        .until("the first to take its name back", Duration::from_secs(30), || async {
            paused.get("/readyz").await.0 == 200
        })
        .await;
    paused.until_logged("host_id twin is this process's again");
    let delivered = deliver(&[&paused], 4..6, 2).await;
    all_completed(&paused, &delivered).await;
    assert!(drives_started(&paused).await > before, "it drives again");
    drop(paused);
    schema.drop_schema().await;
}

/// A host that sees a live host of a newer version (a newer `store::WRITE_FORMAT`: it may write
/// what this one cannot read) claims no more tasks and answers `/readyz` 503 (`version:
/// superseded`), and claims again once that host is gone: upgraded one host at a time, a cluster
/// moves its work onto the new hosts as they start. The newer host is its row in `hosts`, as a
/// newer build registers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_claims_nothing_while_a_host_of_a_newer_version_serves() {
    let Some(schema) = Schema::create("superseded").await else {
        return;
    };
    let config = schema.config_of("[cluster]\nlease_ms = 2000\npoll_ms = 100\n");
    let (old, _) = schema.start_hosts_with(1, &config).remove(0);
    let delivered = deliver(&[&old], 0..2, 2).await;
    all_completed(&old, &delivered).await;

    let name = schema.scratch.name().to_string();
    let newer = i32::try_from(whenever::store::WRITE_FORMAT + 1).expect("format");
    schema
        .scratch
        .admin()
        .execute(
            &format!(
                "INSERT INTO {name}.hosts (host, instance, seen, lease_ms, format)
                 VALUES ('upgraded', 'p1', now(), 600000, $1)"
            ),
            &[&newer],
        )
        .await
        .expect("a newer host registered");
    old.until("the host to stand aside", Duration::from_secs(30), || async {
        let (status, ready) = old.get("/readyz").await;
        status == 503 && ready["version"] == json!("superseded")
    })
    .await;
    old.until_logged("this one claims no more tasks, lets those it drives finish");
    let (_, ready) = old.get("/readyz").await;
    assert_eq!(ready["host_id"], json!("ok"), "its name is its own: {ready}");
    // The operator sees why: the hosts as the store has them, through the API and the CLI.
    let (status, hosts) = old.get("/v1/hosts").await;
    assert_eq!(status, 200, "{hosts}");
    assert_eq!(hosts["shared"], json!(true), "{hosts}");
    assert_eq!(hosts["superseded"], json!(true), "{hosts}");
    let listed = hosts["hosts"].as_array().cloned().unwrap_or_default();
    let upgraded = listed.iter().find(|h| h["host_id"] == "upgraded");
    assert!(
        upgraded.is_some_and(|h| h["live"] == true && h["format"] == newer && h["this"] == false),
        "{hosts}"
    );
    let own = listed.iter().find(|h| h["this"] == true);
    assert!(
        own.is_some_and(|h| h["live"] == true && h["format"] == whenever::store::WRITE_FORMAT),
        "{hosts}"
    );
    let shown = std::process::Command::new(whenever_binary())
        .args(["hosts", "--server", &old.base])
        .env_remove("WHENEVER_TOKEN")
        .env_remove("WHENEVER_TOKEN_FILE")
        .output()
        .expect("whenever hosts runs");
    assert!(shown.status.success(), "{shown:?}");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.lines().any(|l| l.starts_with("upgraded") && l.contains("newer")),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.contains("(this server)") && l.contains("stands aside")),
        "{shown}"
    );
    // And a scraper counts an upgrade under way: live hosts of two formats.
    let (_, metrics) = old.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default();
    for line in [
        format!("whenever_cluster_hosts{{live=\"true\",format=\"{newer}\"}} 1\n"),
        format!(
            "whenever_cluster_hosts{{live=\"true\",format=\"{}\"}} 1\n",
            whenever::store::WRITE_FORMAT
        ),
    ] {
        assert!(metrics.contains(&line), "{line}in {metrics}");
    }
    // A change to a task a newer host may have written is refused: saved back whole by this
    // build, what it cannot read would be lost.
    let (status, error) = old
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tasks/{}", delivered[0].1),
            Some(br#"{"note": "from the old host"}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 503, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("stands aside for a host of a newer version"),
        "{error}"
    );
    // A record this build cannot read, as a newer host may write: the host leaves the read to
    // another host (503), where, serving alone, it reports a corrupt store (500, below).
    let unreadable = &delivered[1].1;
    let runs = format!("{name}.runs");
    let record: String = schema
        .scratch
        .admin()
        .query_one(
            &format!("SELECT record FROM {runs} WHERE task_id = $1 AND run_id = 0"),
            &[unreadable],
        )
        .await
        .expect("a run record")
        .get(0);
    let newer_record = json!({"a record of a newer kind": true}).to_string();
    let set_record = format!("UPDATE {runs} SET record = $2 WHERE task_id = $1 AND run_id = 0");
    schema
        .scratch
        .admin()
        .execute(&set_record, &[unreadable, &newer_record])
        .await
        .expect("a newer record");
    let (status, error) = old.get(&format!("/v1/tasks/{unreadable}")).await;
    assert_eq!(status, 503, "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stands aside for a host of a newer version")
            && message.contains("cannot read what that host may have written (run record"),
        "{error}"
    );

    let before = drives_started(&old).await;
    let delivered = deliver(&[&old], 2..5, 2).await;
    // Fifteen claim polls later, nothing was claimed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        schema
            .count(
                "SELECT count(*) FROM tasks WHERE status = 'running' AND owner IS NULL",
                &[]
            )
            .await,
        3,
        "the orders wait, unclaimed"
    );
    assert_eq!(drives_started(&old).await, before, "the superseded host drove nothing");

    // The newer host is gone (not seen for its lease): the host claims again.
    schema
        .scratch
        .admin()
        .execute(
            &format!("UPDATE {name}.hosts SET seen = now() - interval '1 hour' WHERE host = 'upgraded'"),
            &[],
        )
        .await
        .expect("the newer host gone");
    old.until("the host to be ready again", Duration::from_secs(30), || async {
        old.get("/readyz").await.0 == 200
    })
    .await;
    old.until_logged("no host of a newer version serves on this store any more");
    let (status, error) = old.get(&format!("/v1/tasks/{unreadable}")).await;
    assert_eq!(status, 500, "no newer host to have written it: {error}");
    schema
        .scratch
        .admin()
        .execute(&set_record, &[unreadable, &record])
        .await
        .expect("the record put back");
    all_completed(&old, &delivered).await;
    assert!(drives_started(&old).await > before, "it drives again");
    drop(old);
    schema.drop_schema().await;
}

/// An upgraded host registers the format it writes only once its steps are compiled, and
/// before it writes anything: until then the hosts of the older build serve on (a newer format
/// would make them stand aside while no host claims). The database logs, through triggers, each
/// registration's format, each step version stored and each claim, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_host_registers_its_format_only_once_its_steps_are_ready_to_claim_with() {
    let Some(schema) = Schema::create("starting_format").await else {
        return;
    };
    let name = schema.scratch.name().to_string();
    let store = schema
        .migrated_with(&format!(
            "CREATE TABLE {name}.happened (seq BIGSERIAL PRIMARY KEY, what TEXT NOT NULL);
             CREATE FUNCTION {name}.log_host() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO {name}.happened (what) VALUES ('format ' || NEW.format); RETURN NULL; END $$;
             CREATE TRIGGER log_host AFTER INSERT OR UPDATE ON {name}.hosts
               FOR EACH ROW EXECUTE FUNCTION {name}.log_host();
             CREATE FUNCTION {name}.log_step() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO {name}.happened (what) VALUES ('step stored'); RETURN NULL; END $$;
             CREATE TRIGGER log_step AFTER INSERT ON {name}.step_versions
               FOR EACH ROW EXECUTE FUNCTION {name}.log_step();
             CREATE FUNCTION {name}.log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO {name}.happened (what) VALUES ('claim'); RETURN NULL; END $$;
             CREATE TRIGGER log_claim AFTER UPDATE ON {name}.tasks FOR EACH ROW
               WHEN (NEW.owner IS NOT NULL AND NEW.owner IS DISTINCT FROM OLD.owner)
               EXECUTE FUNCTION {name}.log_claim();"
        ))
        .await;
    // An order waiting to be claimed when the host starts.
    let waiting = whenever::task::Task::new(order(0));
    store.create_task(&waiting).await.expect("stored");

    let (host, _) = schema.start_hosts(1).remove(0);
    all_completed(&host, &[(0, waiting.id.clone())]).await;
    let rows = schema
        .scratch
        .admin()
        .query(&format!("SELECT what FROM {name}.happened ORDER BY seq"), &[])
        .await
        .expect("read");
    let happened: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let claiming = format!("format {}", whenever::store::WRITE_FORMAT);
    let first = |what: &str| happened.iter().position(|h| h == what);
    let published = first(&claiming).unwrap_or_else(|| panic!("never registered {claiming}: {happened:?}"));
    assert_eq!(happened[0], "format 0", "registered as starting: {happened:?}");
    let steps_stored = first("step stored").unwrap_or_else(|| panic!("no step stored: {happened:?}"));
    assert!(
        published < steps_stored,
        "the bundled steps stored only once the format was: {happened:?}"
    );
    assert_eq!(
        happened.iter().filter(|h| *h == "step stored").count(),
        whenever_step_artifacts::RETAILMAX.len(),
        "{happened:?}"
    );
    let claimed = first("claim").unwrap_or_else(|| panic!("never claimed: {happened:?}"));
    assert!(published < claimed, "the format before the first claim: {happened:?}");
    assert!(
        happened[published..].iter().all(|h| h != "format 0"),
        "the format registered once it claims stays: {happened:?}"
    );
    drop(host);
    drop(store);
    schema.drop_schema().await;
}

/// Runs `whenever serve` on `url` with `config`, expected to refuse to start: its output once it
/// exits (within a minute; one that started serving instead is stopped, and shown).
async fn start_refused(url: &str, config: &str) -> std::process::Output {
    let mut host = std::process::Command::new(whenever_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--db", url, "--config", config])
        .env_remove("WHENEVER_TOKEN")
        .env_remove("WHENEVER_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("whenever serve runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while host.try_wait().expect("waited").is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = host.kill();
    host.wait_with_output().expect("output")
}

/// A host whose format the store does not take (a trigger refuses every format but a starting
/// host's 0) does not start, and has written nothing meanwhile: no step version stored, no task
/// claimed; it says why, and gives its name up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_format_the_store_refuses_writes_nothing_and_does_not_start() {
    let Some(schema) = Schema::create("format_refused").await else {
        return;
    };
    let name = schema.scratch.name().to_string();
    let store = schema
        .migrated_with(&format!(
            "CREATE FUNCTION {name}.refuse_format() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF NEW.format > 0 THEN RAISE EXCEPTION 'no format but 0 here'; END IF;
                 RETURN NEW;
               END $$;
             CREATE TRIGGER refuse_format BEFORE INSERT OR UPDATE ON {name}.hosts
               FOR EACH ROW EXECUTE FUNCTION {name}.refuse_format();"
        ))
        .await;
    let waiting = whenever::task::Task::new(order(0));
    store.create_task(&waiting).await.expect("stored");

    let config = schema.config_of("[cluster]\nlease_ms = 1000\npoll_ms = 100\n");
    let output = start_refused(schema.scratch.url(), &config).await;
    refused(&output, 1, "the store did not take this host's registration as host_id");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let format = format!("writing format {} within a lease", whenever::store::WRITE_FORMAT);
    assert!(stderr.contains(&format), "{stderr}");
    assert!(
        stderr.contains("no format but 0 here"),
        "the store's refusal told: {stderr}"
    );
    assert_eq!(
        schema
            .count(&format!("SELECT count(*) FROM {name}.step_versions"), &[])
            .await,
        0,
        "no step stored"
    );
    assert_eq!(
        schema
            .count(
                "SELECT count(*) FROM tasks WHERE owner IS NULL AND status = 'running'",
                &[]
            )
            .await,
        1,
        "the order waits, unclaimed"
    );
    assert_eq!(
        schema.count(&format!("SELECT count(*) FROM {name}.hosts"), &[]).await,
        0,
        "its name given up"
    );
    drop(store);
    schema.drop_schema().await;
}

/// Waits (up to a minute) until no task runs, as `host` counts them, then requires every one of
/// `delivered` (order, task id) completed.
async fn all_completed(host: &ServeProcess, delivered: &[(usize, String)]) {
    host.until("the orders to settle", Duration::from_secs(60), || async {
        host.count("running").await == 0
    })
    .await;
    for (i, id) in delivered {
        let (_, task) = host.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(task["status"], json!("completed"), "order {i}: {task}");
    }
}

/// How many drives `host` started, on whichever thread.
async fn drives_started(host: &ServeProcess) -> i64 {
    host.metric_series("whenever_drives_started_total")
        .await
        .iter()
        .map(|(_, n)| *n)
        .sum()
}

/// A webhook delivered to two hosts at once with one delivery id (a sender's retry that went to
/// another host behind a load balancer) makes one task: the database's unique task id decides,
/// and the host that lost the race answers with the winner's task. Each order completes with one
/// charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_sent_to_two_hosts_at_once_makes_one_task() {
    let Some(schema) = Schema::create("idempotent").await else {
        return;
    };
    let hosts: Vec<ServeProcess> = schema.start_hosts(2).into_iter().map(|(h, _)| h).collect();
    const DELIVERIES: usize = 12;
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..DELIVERIES {
        for host in &hosts {
            let request = host
                .http
                .post(format!("{}/v1/hooks/checkout", host.base))
                .header("Idempotency-Key", format!("delivery-{i}"))
                .body(order(i).to_string());
            sent.spawn(async move {
                let response = request.send().await.expect("answered");
                let status = response.status().as_u16();
                let task: Value = response.json().await.expect("JSON");
                (
                    i,
                    status,
                    task["id"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| panic!("{task}")),
                )
            });
        }
    }
    let mut answers: BTreeMap<usize, Vec<(u16, String)>> = BTreeMap::new();
    while let Some(answer) = sent.join_next().await {
        let (i, status, id) = answer.expect("joined");
        answers.entry(i).or_default().push((status, id));
    }
    for (i, mut answered) in answers {
        answered.sort();
        assert_eq!(answered.len(), 2);
        assert_eq!((answered[0].0, answered[1].0), (200, 201), "order {i}: {answered:?}");
        assert_eq!(answered[0].1, answered[1].1, "order {i}: both answers are one task");
    }
    let host = &hosts[0];
    host.until("every order to settle", Duration::from_secs(60), || async {
        host.count("running").await == 0
    })
    .await;
    let (status, page) = host.get("/v1/tasks?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids.len(), DELIVERIES, "one task per delivery");
    for id in ids {
        let (_, task) = host.get(&format!("/v1/tasks/{id}")).await;
        let task: whenever::task::Task = serde_json::from_value(task).expect("a task");
        assert_eq!(task.status, TaskStatus::Completed, "{id}: {:?}", task.message);
        assert_eq!(successful_calls(&task, "stripe", "charge").len(), 1, "{id}: one charge");
    }
    drop(hosts);
    schema.drop_schema().await;
}

/// A database that refuses the drives' saves for a while (a trigger answers them as PostgreSQL
/// does when its disk is full, SQLSTATE 53100) stops no order: each drive that fails stops at its
/// last commit, is counted, held back and released, and once the database takes writes again
/// every order completes, on whichever host claims it, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_whose_saves_the_database_refuses_for_a_while_complete_once_it_takes_them() {
    let Some(schema) = Schema::create("refusing").await else {
        return;
    };
    // The hosts make the tables.
    let hosts: Vec<ServeProcess> = schema.start_hosts(2).into_iter().map(|(h, _)| h).collect();
    let name = schema.scratch.name().to_string();
    schema
        .scratch
        .admin()
        .batch_execute(&format!(
            "CREATE FUNCTION {name}.disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
             END $$;
             CREATE TRIGGER disk_full BEFORE UPDATE ON {name}.tasks FOR EACH ROW
               WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION {name}.disk_full();"
        ))
        .await
        .expect("the trigger is made");
    const REFUSED_ORDERS: usize = 12;
    // Creating a task inserts it: accepted. Every save of a drive is refused.
    let accepted = deliver(&hosts.iter().collect::<Vec<_>>(), 0..REFUSED_ORDERS, 4).await;
    let failed_drives = || async {
        let mut sum = 0;
        for host in &hosts {
            sum += host.metric("whenever_drives_failed_total").await;
        }
        sum
    };
    let first = &hosts[0];
    first
        .until(
            "drives to fail on the refused saves",
            Duration::from_secs(30),
            || async { failed_drives().await >= 2 },
        )
        .await;
    assert_eq!(
        first.count("running").await,
        REFUSED_ORDERS,
        "no order failed or settled"
    );
    // A task whose drive failed is held back before it is tried again (1 s, then 2, 4, ...), not
    // claimed again at once: over 3 s, a few tries each rather than one every claim.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tries = failed_drives().await;
    assert!(
        tries <= 3 * REFUSED_ORDERS as i64,
        "{tries} failed drives of {REFUSED_ORDERS} orders in about 3 s"
    );
    let logged = hosts.iter().map(ServeProcess::stderr).collect::<Vec<_>>().join("\n");
    assert!(
        logged.contains("storage unavailable") && logged.contains("53100"),
        "the failure is named: {logged}"
    );

    schema
        .scratch
        .admin()
        .batch_execute(&format!("DROP TRIGGER disk_full ON {name}.tasks"))
        .await
        .expect("the trigger is dropped");
    first
        .until("every order to complete", Duration::from_secs(90), || async {
            first.count("completed").await == REFUSED_ORDERS
        })
        .await;
    for (i, id) in &accepted {
        let (status, task) = first.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{task}");
        let task: whenever::task::Task = serde_json::from_value(task).expect("a task");
        assert_eq!(task.data["order"]["status"], json!("processing_complete"), "order {i}");
        assert_each_step_ran_once_ok(&task, &format!("order {i}"));
        assert_eq!(
            successful_calls(&task, "stripe", "charge").len(),
            1,
            "order {i}: one charge"
        );
    }
    drop(hosts);
    schema.drop_schema().await;
}

/// A host opens no more connections to PostgreSQL than `[store] postgres_connections` says,
/// however many orders arrive at once (so that hosts times that fits the server's
/// `max_connections`), and uses more than one of them under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_opens_no_more_database_connections_than_configured() {
    const ORDERS: usize = 60;
    let Some(schema) = Schema::create("connections").await else {
        return;
    };
    let config = schema.config_of("");
    let url = schema.url_named();
    let (host, _) = schema.start_hosts_on(1, &url, &config).remove(0);
    let name = schema.scratch.name().to_string();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (admin, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
            .await
            .expect("an admin connection");
        tokio::spawn(connection);
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while sampling.load(Ordering::SeqCst) {
                let row = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                        &[&name],
                    )
                    .await
                    .expect("counted");
                most = most.max(row.get::<_, i64>(0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            most
        })
    };
    let delivered = deliver(&[&host], 0..ORDERS, 32).await;
    host.until("every order to complete", Duration::from_secs(120), || async {
        host.count("completed").await == ORDERS
    })
    .await;
    sampling.store(false, Ordering::SeqCst);
    let most = sampler.await.expect("sampler");
    assert_eq!(delivered.len(), ORDERS);
    assert!(
        most >= 2 && most <= HOST_CONNECTIONS as i64,
        "at most {HOST_CONNECTIONS} connections open at once, and more than one used: {most}"
    );
    eprintln!("connections open at most: {most} of {HOST_CONNECTIONS}");
    drop(host);
    schema.drop_schema().await;
}

/// Delivers order `i` through `POST /v1/hooks/checkout` of `host` with its delivery id until it
/// is accepted, delivering it again after each `503` (the store could not take it then); answers
/// the task id and how many times it was refused.
async fn deliver_until_accepted(host: &ServeProcess, i: usize) -> (String, usize) {
    for refused in 0..100 {
        let response = host
            .http
            .post(format!("{}/v1/hooks/checkout", host.base))
            .header("Idempotency-Key", format!("delivery-{i:04}"))
            .body(order(i).to_string())
            .send()
            .await
            .expect("the host answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON answer");
        if status == 201 || status == 200 {
            return (body["id"].as_str().expect("id").to_string(), refused);
        }
        assert_eq!(
            (status, &body["error"]["code"]),
            (503, &json!("unavailable")),
            "order {i}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("order {i} was refused 100 times");
}

/// A TCP proxy between the hosts and the database that can reset every connection through it
/// at once, as a load balancer or a NAT that drops its state does: the hosts read a reset
/// (`ECONNRESET`), not a message from the server.
struct ResettingProxy {
    port: u16,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl ResettingProxy {
    /// Listens on a free local port and forwards each connection to `upstream` (`host:port`).
    async fn start(upstream: String) -> ResettingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let forward = tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    // Dropped with a zero linger: the host gets a reset, not an orderly close.
                    let _ = client.set_zero_linger();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                held.lock().expect("connections").push(forward);
            }
        });
        ResettingProxy { port, connections }
    }

    /// Resets every connection through the proxy; answers how many there were.
    fn reset_all(&self) -> usize {
        let mut connections = self.connections.lock().expect("connections");
        let count = connections.iter().filter(|c| !c.is_finished()).count();
        for connection in connections.drain(..) {
            connection.abort();
        }
        count
    }
}

/// The `host:port` of database `url`, and `url` with it replaced by `127.0.0.1:port`.
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, tail) = rest.split_once('/').expect("a database");
    let (user, address) = authority.rsplit_once('@').map_or(("", authority), |(u, a)| (u, a));
    let address = if address.contains(':') {
        address.to_string()
    } else {
        format!("{address}:5432")
    };
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    (address, format!("{scheme}://{user}127.0.0.1:{port}/{tail}"))
}

/// The database's connections to the hosts are cut again and again while orders arrive: by the
/// server (`pg_terminate_backend`, as a restart or a failover does) and by a proxy on the way
/// that resets them. A save or a journal write on a cut connection stops its drive, which is
/// driven again from its last commit on a new connection, and a delivery the store could not
/// take is refused with 503 and accepted when sent again. Every order completes, each step once
/// and each charge once, and both hosts are ready again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_complete_while_the_database_cuts_the_hosts_connections() {
    let Some(schema) = Schema::create("cut").await else {
        return;
    };
    let named = schema.url_named();
    let (upstream, _) = through_proxy(&named, 0);
    let proxy = Arc::new(ResettingProxy::start(upstream).await);
    let (_, url) = through_proxy(&named, proxy.port);
    let hosts: Vec<ServeProcess> = schema
        .start_hosts_on(2, &url, &schema.config())
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    const CUT_ORDERS: usize = 60;
    let cutting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutter = {
        let (cutting, name, proxy) = (cutting.clone(), schema.scratch.name().to_string(), proxy.clone());
        let (admin, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
            .await
            .expect("a second admin connection");
        tokio::spawn(connection);
        tokio::spawn(async move {
            let (mut terminated, mut reset) = (0, 0);
            for round in 0.. {
                if !cutting.load(Ordering::SeqCst) {
                    break;
                }
                if round % 2 == 0 {
                    let rows = admin
                        .query(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                            &[&name],
                        )
                        .await
                        .expect("cut");
                    terminated += rows.len();
                } else {
                    reset += proxy.reset_all();
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (terminated, reset)
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(hosts);
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (hosts, next) = (hosts.clone(), next.clone());
        senders.spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= CUT_ORDERS {
                    return accepted;
                }
                let (id, refused) = deliver_until_accepted(&hosts[i % 2], i).await;
                accepted.push((i, id, refused));
                // Spread over a few seconds of cutting.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
    }
    let mut accepted = Vec::new();
    while let Some(done) = senders.join_next().await {
        accepted.extend(done.expect("sender"));
    }
    // The cutting goes on a little longer, while the drives of the last orders are under way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cutting.store(false, Ordering::SeqCst);
    let (terminated, reset) = cutter.await.expect("cutter");
    let refused: usize = accepted.iter().map(|(_, _, r)| r).sum();
    let first = &hosts[0];
    first
        .until("every order to complete", Duration::from_secs(120), || async {
            first.count("completed").await == CUT_ORDERS
        })
        .await;
    let mut failed_drives = 0;
    for host in hosts.iter() {
        failed_drives += host.metric("whenever_drives_failed_total").await;
        host.until("the host to be ready", Duration::from_secs(30), || async {
            host.get("/readyz").await.0 == 200
        })
        .await;
    }
    eprintln!(
        "connections ended by the server: {terminated}, reset by the proxy: {reset}; deliveries \
         refused with 503 and accepted when sent again: {refused}; drives stopped and driven \
         again: {failed_drives}"
    );
    assert!(terminated >= 4 && reset >= 4, "the hosts' connections were cut");
    assert_eq!(
        accepted.iter().map(|(i, _, _)| *i).collect::<BTreeSet<_>>().len(),
        CUT_ORDERS
    );
    for (i, id, _) in &accepted {
        let (status, task) = first.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{task}");
        let task: whenever::task::Task = serde_json::from_value(task).expect("a task");
        assert_eq!(task.data["order"]["status"], json!("processing_complete"), "order {i}");
        assert_eq!(task.data["order"]["id"], json!(format!("ORD-CLUSTER-{i:04}")));
        assert_each_step_ran_once_ok(&task, &format!("order {i}"));
        assert_eq!(
            successful_calls(&task, "stripe", "charge").len(),
            1,
            "order {i}: one charge"
        );
    }
    let (status, page) = first.get("/v1/tasks?limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(
        page["tasks"].as_array().map(Vec::len),
        Some(CUT_ORDERS),
        "a refused delivery left no task behind"
    );
    drop(hosts);
    schema.drop_schema().await;
}

/// A database that takes reads but holds this host's writes (here: its probe table locked, as a
/// long migration or a stuck server would): `/readyz` answers 503 with the store `timed_out`
/// after 2 s, `/healthz` and reads still answer, the probes stuck behind the lock are ended by the
/// server rather than piling up on the pool's connections, and the host is ready again once the
/// lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_writes_are_held_is_not_ready_until_they_go_through() {
    let Some(schema) = Schema::create("held").await else {
        return;
    };
    let (host, _) = schema.start_hosts(1).remove(0);
    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["store"], json!("ok"));

    let (locker, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("a second admin connection");
    tokio::spawn(connection);
    let name = schema.scratch.name().to_string();
    locker
        .batch_execute(&format!("BEGIN; LOCK TABLE {name}.probes IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("locked");
    // The answer of the probe made before the lock is reused for a second: let it pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    // Asked again and again for 13 s, as a balancer in a hurry would.
    while started.elapsed() < Duration::from_secs(13) {
        let asked = std::time::Instant::now();
        let (status, ready) = host.get("/readyz").await;
        answers.push((status, ready, asked.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck: i64 = locker
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO probes%'",
            &[],
        )
        .await
        .expect("counted")
        .get(0);
    let (status, _) = host.get("/healthz").await;
    assert_eq!(status, 200, "alive");
    let (status, page) = host.get("/v1/tasks").await;
    assert_eq!(status, 200, "reads answer: {page}");
    locker.batch_execute("ROLLBACK").await.expect("unlocked");

    assert!(answers.len() >= 3, "{answers:?}");
    for (status, ready, took) in &answers {
        assert_eq!(*status, 503, "{ready}");
        assert_eq!(
            (&ready["status"], &ready["serving"], &ready["store"]),
            (&json!("not_ready"), &json!("ok"), &json!("timed_out")),
        );
        assert!(
            *took < Duration::from_secs(4),
            "answered after the probe's 2 s: {took:?}"
        );
    }
    // A probe every 3 s (2 s waited for, 1 s reused), each ended by the server 4 s after it
    // began: at most two wait at once. Left waiting, there would be five by now.
    assert!(stuck <= 2, "{stuck} probes wait behind the lock");
    host.until_logged("not ready: the store did not commit a probe write within 2 s");
    host.until("the host to be ready again", Duration::from_secs(10), || async {
        host.get("/readyz").await.0 == 200
    })
    .await;
    host.until_logged("ready again");
    drop(host);
    schema.drop_schema().await;
}
