//! The same command lines on a PostgreSQL log (issue 33): every line says
//! exactly what it says on sled, and the log's digest, which hashes every
//! record, is the same, record for record.

use tests::Sandbox;

const ALICE: &str = "alice@contoso.onmicrosoft.com";

/// A history of writes, a refusal, sync passes and views: each line, its
/// exit code and its stdout.
fn script(sb: &mut Sandbox) -> Vec<(String, i32, String)> {
    let lines = [
        "init --tenant contoso.onmicrosoft.com --admin admin@contoso.onmicrosoft.com --name Contoso",
        "sku add --sku DYN365_SALES --kind d365 --seats 1",
        "group create --name Sales-SG",
        "env create --name Sales --type production --security-group Sales-SG --app sales",
        &format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"),
        "user create --upn bob@contoso.onmicrosoft.com --first Bob --last Jones --license DYN365_SALES",
        &format!("group add-member --group Sales-SG --upn {ALICE}"),
        "sync",
        &format!("user access --env Sales --upn {ALICE}"),
        &format!("group remove-member --group Sales-SG --upn {ALICE}"),
        "sync",
        "systemusers --env Sales --json",
        "systemusers --env Sales --at seq:20",
        &format!("user access --env Sales --upn {ALICE}"),
        "review --json",
        "history --json",
        "verify --json",
        "digest --json",
    ];
    lines
        .iter()
        .map(|line| {
            let run = sb.run(line);
            // Temporary passwords come from the OS's random numbers, never the seed.
            let said = run.stdout.lines().filter(|l| !l.starts_with("temporary password"));
            (line.to_string(), run.code, said.collect::<Vec<_>>().join("\n"))
        })
        .collect()
}

#[test]
fn l4_every_line_answers_on_postgres_as_on_sled_and_the_digest_is_the_same() {
    let on_sled = script(&mut Sandbox::on_sled());
    let on_postgres = script(&mut Sandbox::on_postgres());
    assert!(on_sled.iter().any(|(_, code, _)| *code == 1), "the script has a refusal");
    for (sled, postgres) in on_sled.iter().zip(&on_postgres) {
        assert_eq!(sled, postgres, "`{}`", sled.0);
    }
    let digest: serde_json::Value = serde_json::from_str(&on_postgres.last().unwrap().2).unwrap();
    assert!(digest["hash"].as_str().is_some_and(|h| h.len() == 64), "{digest}");
}
