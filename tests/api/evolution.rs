//! Step 9 end to end: a session's genome at creation (given, drawn from its task type's
//! population, or the default), its outcome measured from what happened when it completes,
//! populations that breed, persist and survive a restart, the same seed giving the same
//! evolution, and a scripted workload in which one gene value truly yields more measured
//! fitness converging toward it, while a workload without signal yields no insight.

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, assert_error, both_backends, start_on};

both_backends!(
    a_session_runs_under_a_given_drawn_or_default_genome,
    bad_genomes_are_refused_and_create_nothing,
    completion_measures_the_session_and_scores_it,
    populations_breed_persist_and_survive_a_restart,
    the_same_seed_breeds_the_same_way,
    a_workload_with_signal_converges_and_noise_shows_no_insight,
    hubs_sharing_a_database_draw_from_one_population,
);

fn evolving(population: usize, per_generation: usize, seed: u64) -> Settings {
    let mut s = Settings::for_database("unused");
    s.evolution_population = population;
    s.evolution_sessions_per_generation = per_generation;
    s.evolution_seed = Some(seed);
    s
}

async fn hub(backend: Backend, settings: Settings) -> Option<TestApp> {
    Some(start_on(TestDb::fresh(backend)?, settings).await)
}

async fn ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let (s, b) = app.post_as(token, path, &body).await;
    assert!(s.is_success(), "{path} {body}: {s} {b}");
    b
}

/// Creates a one-driver session of `task_type`; returns (id, token, its genome).
async fn create(app: &TestApp, task_type: &str) -> (String, String, Value) {
    let (s, b) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "evolving", "participants": ["claude"], "taskType": task_type}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (
        b["sessionId"].as_str().unwrap().to_owned(),
        b["tokens"]["claude"].as_str().unwrap().to_owned(),
        b["genome"].clone(),
    )
}

/// Does `tasks` tasks from creation to completion, reports 20 000 tokens, completes.
async fn work_and_complete(app: &TestApp, id: &str, token: &str, tasks: usize) {
    for i in 0..tasks {
        let made = ok(
            app,
            token,
            "/mcp/collaborate/task",
            json!({"description": format!("task {i}"), "assignedTo": "claude"}),
        )
        .await;
        let task = made["tasks"][0]["id"].clone();
        for status in ["in_progress", "completed"] {
            ok(
                app,
                token,
                "/mcp/collaborate/task/update",
                json!({"taskId": task, "status": status}),
            )
            .await;
        }
    }
    ok(
        app,
        token,
        "/mcp/collaborate/status",
        json!({"kind": "test", "status": "pass", "summary": "green",
               "details": {"testsWritten": 4, "testsPassing": 4, "tokensUsed": 20000}}),
    )
    .await;
    let (s, b) = app
        .post(
            &format!("/mcp/session/{id}/status"),
            &json!({"action": "complete"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// The session's evolution record, once the evolution actor has scored it.
async fn scored(app: &TestApp, id: &str) -> Value {
    // Scoring waits for the shared writer: generous on a loaded machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (s, b) = app
            .get(&format!("/mcp/evolution/session?sessionId={id}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if !b["outcome"]["fitness"].is_null() {
            return b;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("session {id} was never scored");
}

async fn populations(app: &TestApp) -> Value {
    let (s, b) = app.get("/mcp/evolution?members=true").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["populations"].clone()
}

async fn a_session_runs_under_a_given_drawn_or_default_genome(backend: Backend) {
    let Some(app) = hub(backend, evolving(4, 4, 1)).await else {
        return;
    };
    // Given: the genes named, the rest default; what it sets is on the session.
    let (s, given) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "given", "participants": ["claude", "gemini"],
                    "genome": {"handshakeStrictness": 0.2, "checkpointFrequency": 1, "taskAllocation": "roundRobin"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{given}");
    assert_eq!(given["genome"]["origin"]["kind"], "explicit");
    assert_eq!(given["genome"]["taskType"], "general");
    assert_eq!(given["genome"]["genome"]["handshakeStrictness"], 0.2);
    assert_eq!(given["genome"]["genome"]["briefingDepth"], "standard");
    assert_eq!(given["handshakeMode"], "loose");
    assert_eq!(given["saveInterval"], 60);
    assert_eq!(given["taskAllocation"], "roundRobin");
    assert_eq!(given["rotationPolicy"], "automatic");

    // Drawn: the task type's population starts on first use and hands out its members evenly.
    let mut members = Vec::new();
    for _ in 0..4 {
        let (_, _, genome) = create(&app, "refactoring").await;
        assert_eq!(genome["origin"]["kind"], "population", "{genome}");
        assert_eq!(genome["taskType"], "refactoring");
        members.push(genome["origin"]["memberId"].as_u64().unwrap());
    }
    members.sort();
    assert_eq!(members, [0, 1, 2, 3], "each member once per round");
    let pops = populations(&app).await;
    assert_eq!(pops.as_array().unwrap().len(), 1, "{pops}");
    assert_eq!(pops[0]["taskType"], "refactoring");
    assert_eq!(pops[0]["size"], 4);

    // Explicit settings win and are named, so the member is not credited with the session.
    let (s, over) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "over", "participants": ["claude"], "taskType": "refactoring", "saveInterval": 30}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{over}");
    assert_eq!(over["saveInterval"], 30);
    assert_eq!(over["genome"]["overridden"], json!(["saveInterval"]));

    // Neither: the default genome, and the hub's long-standing manual rotation.
    let (s, plain) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "plain", "participants": ["claude"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["genome"]["origin"]["kind"], "default");
    assert_eq!(plain["rotationPolicy"], "manual");
    assert_eq!(plain["handshakeMode"], "strict");
    assert_eq!(plain["reviewTimeoutSecs"], 600);

    // The session action shows what each gene does there.
    let id = given["sessionId"].as_str().unwrap();
    let (s, b) = app
        .get(&format!("/mcp/evolution/session?sessionId={id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["effects"]["handshakeMode"], "loose");
    assert_eq!(b["effects"]["saveInterval"], 60);
    assert_eq!(b["effects"]["maxTasksInProgress"], 5);
    assert!(b.get("outcome").is_none(), "not completed yet: {b}");
}

async fn bad_genomes_are_refused_and_create_nothing(backend: Backend) {
    let Some(app) = hub(backend, evolving(4, 4, 1)).await else {
        return;
    };
    let cases = [
        (
            json!({"genome": {"handshakeStrictness": 2}}),
            "genome.handshakeStrictness",
        ),
        (
            json!({"genome": {"contextSyncFrequency": 0}}),
            "genome.contextSyncFrequency",
        ),
        (
            json!({"genome": {"messageVerbosity": "loud"}}),
            "genome.messageVerbosity",
        ),
        (json!({"genome": {"colour": "blue"}}), "genome.colour"),
        (json!({"taskType": ""}), "taskType"),
        (json!({"taskType": " padded"}), "taskType"),
    ];
    for (extra, field) in cases {
        let mut body = json!({"name": "bad", "participants": ["claude"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, b) = app.post("/mcp/session/create", &body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{b}"
        );
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    // A create refused for anything else draws nothing from the population either.
    let refused = [
        json!({"name": "", "participants": ["claude"], "taskType": "refactoring"}),
        json!({"name": "x", "participants": ["claude"], "taskType": "refactoring", "reviewTimeoutSecs": 0}),
        json!({"name": "x", "participants": ["claude", "claude"], "taskType": "refactoring"}),
    ];
    for body in refused {
        let (s, b) = app.post("/mcp/session/create", &body).await;
        assert!(s.is_client_error(), "{body}: {s} {b}");
    }
    let (s, made) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "x", "participants": ["claude"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let token = made["tokens"]["claude"].as_str().unwrap();
    let (s, b) = app
        .post_as(
            token,
            "/mcp/session/create",
            &json!({"name": "y", "participants": ["claude"], "taskType": "refactoring"}),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (_, list) = app.get("/mcp/session/list").await;
    assert_eq!(
        list["sessions"].as_array().map(Vec::len),
        Some(1),
        "only the good one was created: {list}"
    );
    assert_eq!(populations(&app).await, json!([]), "no population started");
    let (s, b) = app.get("/mcp/evolution?taskType=").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
}

async fn completion_measures_the_session_and_scores_it(backend: Backend) {
    let Some(app) = hub(backend, evolving(4, 4, 1)).await else {
        return;
    };
    let (s, b) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "measured", "participants": ["claude", "gemini"], "taskType": "bugHunting"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["sessionId"].as_str().unwrap().to_owned();
    let (claude, gemini) = (
        b["tokens"]["claude"].as_str().unwrap().to_owned(),
        b["tokens"]["gemini"].as_str().unwrap().to_owned(),
    );
    ok(
        &app,
        &gemini,
        "/mcp/messages/send",
        json!({"to": "claude", "body": "found it"}),
    )
    .await;
    ok(
        &app,
        &claude,
        "/mcp/messages/send",
        json!({"to": "gemini", "body": "fixing"}),
    )
    .await;
    ok(
        &app,
        &claude,
        "/mcp/collaborate/status",
        json!({"kind": "build", "status": "fail", "summary": "E0308"}),
    )
    .await;
    work_and_complete(&app, &id, &claude, 2).await;
    let b = scored(&app, &id).await;
    let m = &b["outcome"]["measured"];
    assert_eq!(m["tasksCompleted"], 2, "{b}");
    assert_eq!(m["messages"], 2, "{b}");
    assert_eq!(m["buildFailures"], 1, "{b}");
    assert_eq!(m["testsWritten"], 4, "{b}");
    assert_eq!(m["testsPassing"], 4, "{b}");
    assert_eq!(m["tokensUsed"], 20000, "{b}");
    assert_eq!(m["tokensEstimated"], false, "{b}");
    // The concept's formula: 2×100 + 10000/20000×50 + 1/(1+1)×200 + 1×150 + 1×100 = 575.
    let f = &b["outcome"]["fitness"];
    assert_eq!(f["score"], 575.0, "{b}");
    assert!(f["terms"].as_array().is_some_and(|t| t.len() >= 5), "{b}");
    assert_eq!(f["weights"]["tasksCompleted"], 100.0, "{b}");
    // Scored into its member: one of four sessions of the generation.
    let pops = populations(&app).await;
    assert_eq!(pops[0]["scoredThisGeneration"], 1, "{pops}");
    assert_eq!(pops[0]["best"]["fitness"], 575.0, "{pops}");
}

async fn populations_breed_persist_and_survive_a_restart(backend: Backend) {
    let Some(app) = hub(backend, evolving(3, 3, 11)).await else {
        return;
    };
    for round in 0..4 {
        let (id, token, _) = create(&app, "codeReview").await;
        work_and_complete(&app, &id, &token, 1 + round % 2).await;
        scored(&app, &id).await;
    }
    let before = populations(&app).await;
    assert_eq!(
        before[0]["generation"], 1,
        "3 sessions closed generation 0: {before}"
    );
    assert_eq!(before[0]["history"].as_array().unwrap().len(), 1);
    assert_eq!(before[0]["scoredThisGeneration"], 1);

    // A crash between the completion's commit and the scoring's: the outcome is stored, the
    // population does not have it yet. Made exact by putting the database back to that
    // moment: the population as it was after the draw, the outcome unscored.
    let (id, token, _) = create(&app, "codeReview").await;
    let drawn = sql_state(backend, &app.db, "codeReview");
    work_and_complete(&app, &id, &token, 1).await;
    scored(&app, &id).await;
    let db = app.stop().await;
    sql_exec(
        backend,
        &db,
        &format!(
            "UPDATE populations SET state = '{}' WHERE task_type = 'codeReview'",
            drawn.replace('\'', "''")
        ),
    );
    sql_exec(
        backend,
        &db,
        &format!(
            "UPDATE session_outcomes SET fitness = NULL, terms = NULL WHERE session_id = '{id}'"
        ),
    );
    let app = start_on(db, evolving(3, 3, 11)).await;
    let b = scored(&app, &id).await;
    assert!(b["outcome"]["fitness"]["score"].as_f64().unwrap() > 0.0);
    let after = populations(&app).await;
    assert_eq!(after[0]["generation"], before[0]["generation"], "{after}");
    assert_eq!(after[0]["history"], before[0]["history"]);
    assert_eq!(after[0]["scoredThisGeneration"], 2, "{after}");
    // Scored once only, whatever is sent again.
    let db = app.stop().await;
    let app = start_on(db, evolving(3, 3, 11)).await;
    assert_eq!(populations(&app).await[0]["scoredThisGeneration"], 2);
}

/// Two evolution actors on one database, as two hubs sharing it run them: their draws come
/// from the population as stored, never from a copy the other has moved on from. (Each drawing
/// from its own copy, the stored population would count 12 draws, not 24, and members would be
/// drawn twice while others were not drawn at all.)
async fn hubs_sharing_a_database_draw_from_one_population(backend: Backend) {
    use actix::Actor;
    use collab_hub::actors::evolution::EvolutionActor;
    use collab_hub::actors::messages::DrawGenome;
    use collab_hub::domain::genome::TaskType;
    use collab_hub::store::{DbTarget, Store, migrate};
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let target = DbTarget::parse(&db.url).unwrap();
    migrate(&target).expect("migrations");
    let settings = evolving(12, 100, 5).evolution().unwrap();
    let mut hubs = Vec::new();
    for _ in 0..2 {
        let store = Store::open(target.clone()).await.expect("store");
        hubs.push(EvolutionActor::new(store, settings.clone()).start());
    }
    let task_type = TaskType::parse("codeReview").unwrap();
    let draws = (0..24).map(|i| hubs[i % 2].send(DrawGenome(task_type.clone())));
    let mut drawn: Vec<u64> = futures::future::join_all(draws)
        .await
        .into_iter()
        .map(|d| d.expect("mailbox").expect("draw").member_id)
        .collect();
    drawn.sort_unstable();
    let state: Value = serde_json::from_str(&sql_state(backend, &db, "codeReview")).unwrap();
    let assigned: Vec<u64> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["assigned"].as_u64().unwrap())
        .collect();
    assert_eq!(assigned, vec![2; 12], "{state}");
    // Each member drawn twice: once by each hub, or twice by one.
    let mut expected: Vec<u64> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| [m["id"].as_u64().unwrap(); 2])
        .collect();
    expected.sort_unstable();
    assert_eq!(drawn, expected);
}

#[derive(diesel::QueryableByName)]
struct State {
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
}

/// The stored state of `task_type`'s population, read beside the running hub.
fn sql_state(backend: Backend, db: &TestDb, task_type: &str) -> String {
    use diesel::{Connection, RunQueryDsl};
    let q = diesel::sql_query(format!(
        "SELECT state FROM populations WHERE task_type = '{task_type}'"
    ));
    let row: State = match backend {
        Backend::Postgres => q
            .get_result(&mut diesel::PgConnection::establish(&db.url).unwrap())
            .unwrap(),
        Backend::Sqlite => q
            .get_result(
                &mut diesel::SqliteConnection::establish(db.url.trim_start_matches("sqlite://"))
                    .unwrap(),
            )
            .unwrap(),
    };
    row.state
}

/// Runs `sql` on the stopped hub's database.
fn sql_exec(backend: Backend, db: &TestDb, sql: &str) {
    assert_eq!(crate::helpers::execute_beside(backend, db, sql), 1, "{sql}");
}

/// Runs `sessions` sessions of `task_type` in which `tasks_for(genome, i)` tasks get done.
async fn workload(
    app: &TestApp,
    task_type: &str,
    sessions: usize,
    tasks_for: impl Fn(&Value, usize) -> usize,
) {
    for i in 0..sessions {
        let (id, token, genome) = create(app, task_type).await;
        let n = tasks_for(&genome["genome"], i);
        work_and_complete(app, &id, &token, n).await;
        scored(app, &id).await;
    }
}

fn verbosity_pays(genome: &Value, _: usize) -> usize {
    if genome["messageVerbosity"] == "minimal" {
        3
    } else {
        1
    }
}

async fn the_same_seed_breeds_the_same_way(backend: Backend) {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let Some(app) = hub(backend, evolving(4, 4, 42)).await else {
            return;
        };
        workload(&app, "refactoring", 12, verbosity_pays).await;
        runs.push(populations(&app).await);
        app.stop().await;
    }
    assert_eq!(runs[0][0]["generation"], 3, "{}", runs[0]);
    assert_eq!(
        runs[0], runs[1],
        "same seed, same sessions: same populations"
    );
    // A different seed starts from other random genomes.
    let Some(app) = hub(backend, evolving(4, 4, 43)).await else {
        return;
    };
    workload(&app, "refactoring", 4, verbosity_pays).await;
    let other = populations(&app).await;
    assert_ne!(other[0]["members"], runs[0][0]["members"]);
}

/// Stated bound: with 6 members and 6 sessions a generation, 10 generations.
const GENERATIONS: usize = 10;

async fn a_workload_with_signal_converges_and_noise_shows_no_insight(backend: Backend) {
    let Some(app) = hub(backend, evolving(6, 6, 7)).await else {
        return;
    };
    // Signal: sessions that run with minimal verbosity truly get three tasks done, others one.
    workload(&app, "featureDevelopment", 6 * GENERATIONS, verbosity_pays).await;
    let pop = &populations(&app).await[0];
    assert_eq!(pop["generation"], GENERATIONS, "{pop}");
    assert_eq!(
        pop["best"]["genome"]["messageVerbosity"], "minimal",
        "{pop}"
    );
    let minimal = pop["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["genome"]["messageVerbosity"] == "minimal")
        .count();
    assert!(
        minimal >= 4,
        "{minimal} of 6 members minimal after {GENERATIONS} generations: {pop}"
    );
    let history = pop["history"].as_array().unwrap();
    let first = history[0]["meanFitness"].as_f64().unwrap();
    let last = history[GENERATIONS - 1]["meanFitness"].as_f64().unwrap();
    assert!(last > first, "mean fitness rose: {first} → {last}");
    let (s, found) = app
        .get("/mcp/evolution/insights?taskType=featureDevelopment")
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let insight = found["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["gene"] == "messageVerbosity")
        .unwrap_or_else(|| panic!("the signal is found: {found}"));
    assert_eq!(insight["group"], "minimal", "{insight}");
    assert_eq!(insight["higher"], true, "{insight}");
    assert!(insight["confidence"].as_f64().unwrap() > 0.95, "{insight}");

    // Noise: tasks done have nothing to do with the genome.
    let noise = |_: &Value, i: usize| (i * 7 + 3) % 4;
    workload(&app, "codeReview", 48, noise).await;
    let (s, found) = app.get("/mcp/evolution/insights?taskType=codeReview").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["sessions"], 48, "{found}");
    assert_eq!(
        found["insights"],
        json!([]),
        "no pattern without signal: {found}"
    );
}
