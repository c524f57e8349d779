//! Property test of the resource conflict rule, `conflicts_never_miss_a_common_file`: for
//! fixed and random resources (directories, files, globs with `*`, `?`, `[..]`, `**`, symbols),
//! whenever some concrete file (and symbol) matches both by a small independent matcher,
//! `conflicts_with` must say so (saying so without a witness is allowed: the rule is
//! conservative). Also symmetry, reflexivity, `covers_file`, and that `Display` parses back to
//! the same resource.
//!
//! A failure prints the seed; `LOCK_PROPS_SEED=<seed> cargo test --lib resource_props` reruns
//! with it. (The lock table's properties are in `lock_props`.)

use super::lock::Resource;
use super::lock_props::seed_from_env;
use super::test_rng::Rng;

/// A resource as this test understands it: path segments (globs allowed), "everything below"
/// when it ends in `/`, and an optional symbol.
#[derive(Debug, Clone)]
struct Spec {
    text: String,
    segs: Vec<String>,
    prefix: bool,
    symbol: Option<String>,
}

impl Spec {
    /// Splits the simple texts this test writes (no `.`, `..`, `//` or blanks in them).
    fn of(text: &str) -> Spec {
        let (path, symbol) = match text.split_once('#') {
            Some((p, s)) => (p, Some(s.to_owned())),
            None => (text, None),
        };
        Spec {
            text: text.to_owned(),
            segs: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            prefix: path.ends_with('/'),
            symbol,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Any,
    One,
    Set(Vec<char>),
    Lit(char),
}

/// One path segment against a glob: `*` any run, `?` one character, `[ab]` one of a set
/// (dynamic programming over prefixes, unlike the hub's backtracking).
fn seg_match(pattern: &str, text: &str) -> bool {
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Any,
            '?' => Tok::One,
            '[' => {
                let set: Vec<char> = chars.by_ref().take_while(|c| *c != ']').collect();
                Tok::Set(set)
            }
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // ok[j]: the tokens so far match text[..j].
    let mut ok = vec![false; text.len() + 1];
    ok[0] = true;
    for tok in &toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match tok {
                Tok::Any => ok[j] || (j > 0 && next[j - 1]),
                Tok::One => j > 0 && ok[j - 1],
                Tok::Set(set) => j > 0 && ok[j - 1] && set.contains(&text[j - 1]),
                Tok::Lit(c) => j > 0 && ok[j - 1] && text[j - 1] == *c,
            };
        }
        ok = next;
    }
    ok[text.len()]
}

/// Segments against a file's segments. `**` is any number of whole segments (gitignore
/// style): zero or more in the middle or at the start, one or more at the end (`/src/**` is
/// everything inside `src`).
fn segs_match(pattern: &[String], file: &[&str]) -> bool {
    match pattern.split_first() {
        None => file.is_empty(),
        Some((first, rest)) if first == "**" => {
            let least = usize::from(rest.is_empty());
            (least..=file.len()).any(|k| segs_match(rest, &file[k..]))
        }
        Some((first, rest)) => {
            !file.is_empty() && seg_match(first, file[0]) && segs_match(rest, &file[1..])
        }
    }
}

/// Does `spec`'s path cover the file? A directory covers what is strictly below it.
fn path_covers(spec: &Spec, file: &[&str]) -> bool {
    if spec.prefix {
        (0..file.len()).any(|k| segs_match(&spec.segs, &file[..k]))
    } else {
        segs_match(&spec.segs, file)
    }
}

/// A symbol resource covers that symbol and its members; no symbol covers the whole file.
fn symbol_covers(spec: &Spec, symbol: &str) -> bool {
    match &spec.symbol {
        None => true,
        Some(s) => symbol == s || symbol.starts_with(&format!("{s}.")),
    }
}

const SEG_VOCAB: [&str; 13] = [
    "src", "auth", "deep", "x.ts", "a.ts", "ab.ts", "*", "*.ts", "a*", "**", "a?.ts", "[ab].ts",
    "*.rs",
];
const FILE_NAMES: [&str; 7] = ["src", "auth", "deep", "x.ts", "a.ts", "ab.ts", "b.rs"];
const SYMBOLS: [&str; 5] = ["A", "A.b", "A.b.c", "Ab", "B"];
const FIXED: [&str; 26] = [
    "/",
    "/src/",
    "/src/auth",
    "/src/auth/",
    "/src/auth/x.ts",
    "/src/auth/deep/x.ts",
    "/src/auth/*",
    "/src/auth/*.ts",
    "/src/*",
    "/src/*/",
    "/src/**/*.ts",
    "/src/**",
    "/src/**/",
    "/**/x.ts",
    "/**",
    "/src/**/deep/*",
    "/src/a?.ts",
    "/src/[ab].ts",
    "/src/auth/x.ts#A",
    "/src/auth/x.ts#A.b",
    "/src/auth/x.ts#Ab",
    "/src/*/x.ts#A.b",
    "/src/**/*.ts#A",
    "/src/**/*.ts#B",
    "/src/ab.ts",
    "/deep/",
];

fn random_spec(rng: &mut Rng) -> Spec {
    let prefix = rng.chance(25);
    let n = if prefix {
        rng.below(4)
    } else {
        1 + rng.below(4)
    };
    let segs: Vec<&str> = (0..n).map(|_| *rng.pick(&SEG_VOCAB)).collect();
    let mut text = format!("/{}", segs.join("/"));
    if prefix && n > 0 {
        text.push('/');
    }
    if !prefix && rng.chance(35) {
        text.push('#');
        let symbol = *rng.pick(&SYMBOLS);
        text.push_str(symbol);
    }
    Spec::of(&text)
}

/// A random resource text (directories, files, globs, `**`, symbols), for other properties
/// that need the same mix (`lock_index_props`).
pub(super) fn random_resource(rng: &mut Rng) -> String {
    random_spec(rng).text
}

/// A random file path (depth 1..=4), as writes name them.
pub(super) fn random_file(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(4);
    let names: Vec<&str> = (0..depth).map(|_| *rng.pick(&FILE_NAMES)).collect();
    format!("/{}", names.join("/"))
}

/// Every file of depth 1..=4 over `FILE_NAMES`.
fn all_files() -> Vec<Vec<&'static str>> {
    let mut files: Vec<Vec<&str>> = Vec::new();
    let mut layer: Vec<Vec<&str>> = vec![Vec::new()];
    for _ in 0..4 {
        layer = layer
            .iter()
            .flat_map(|p| {
                FILE_NAMES.iter().map(move |n| {
                    let mut q = p.clone();
                    q.push(*n);
                    q
                })
            })
            .collect();
        files.extend(layer.iter().cloned());
    }
    files
}

#[test]
fn conflicts_never_miss_a_common_file() {
    // The reference matcher itself, on a few cases.
    assert!(seg_match("a?.ts", "ab.ts") && !seg_match("a?.ts", "a.ts"));
    assert!(seg_match("[ab].ts", "a.ts") && !seg_match("[ab].ts", "x.ts"));
    assert!(seg_match("*", "") && seg_match("a*", "auth") && !seg_match("*.ts", "b.rs"));
    let s = |t: &str| Spec::of(t);
    assert!(path_covers(&s("/src/**/*.ts"), &["src", "x.ts"]));
    assert!(path_covers(&s("/src/**/*.ts"), &["src", "a", "b", "x.ts"]));
    assert!(!path_covers(&s("/src/**"), &["src"]));
    assert!(path_covers(&s("/src/"), &["src", "x"]) && !path_covers(&s("/src/"), &["src"]));
    assert!(path_covers(&s("/"), &["x"]));

    let seed = seed_from_env().unwrap_or(0x5EED_C0F1_1C75);
    let mut rng = Rng::new(seed);
    let mut specs: Vec<Spec> = FIXED.iter().map(|t| Spec::of(t)).collect();
    specs.extend((0..260).map(|_| random_spec(&mut rng)));
    let files = all_files();
    let items = files.len() * SYMBOLS.len();
    let words = items.div_ceil(64);

    let mut failures: Vec<String> = Vec::new();
    let mut parsed = Vec::new();
    let mut covered = Vec::new();
    for spec in &specs {
        let r = match Resource::parse(&spec.text) {
            Ok(r) => r,
            Err(e) => panic!("{} does not parse: {e}", spec.text),
        };
        // Display gives back a text that parses to the same resource.
        let again = Resource::parse(&r.to_string());
        if again.as_ref() != Ok(&r) {
            failures.push(format!("{} → {} → {again:?}", spec.text, r));
        }
        let mut bits = vec![0u64; words];
        for (f, file) in files.iter().enumerate() {
            if !path_covers(spec, file) {
                continue;
            }
            if !r.covers_file(&format!("/{}", file.join("/"))) {
                failures.push(format!(
                    "{} covers /{} but covers_file says no",
                    spec.text,
                    file.join("/")
                ));
            }
            for (k, sym) in SYMBOLS.iter().enumerate() {
                if symbol_covers(spec, sym) {
                    let bit = f * SYMBOLS.len() + k;
                    bits[bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        parsed.push(r);
        covered.push(bits);
    }

    let (mut pairs, mut witnessed, mut conservative) = (0usize, 0usize, 0usize);
    for i in 0..specs.len() {
        if !parsed[i].conflicts_with(&parsed[i]) {
            failures.push(format!("{} does not conflict with itself", specs[i].text));
        }
        for j in i + 1..specs.len() {
            pairs += 1;
            let (a, b) = (&parsed[i], &parsed[j]);
            let ab = a.conflicts_with(b);
            if ab != b.conflicts_with(a) {
                failures.push(format!(
                    "asymmetric: {} vs {}: {ab}, the other way {}",
                    specs[i].text, specs[j].text, !ab
                ));
            }
            let witness = (0..words)
                .find(|w| covered[i][*w] & covered[j][*w] != 0)
                .map(|w| {
                    let bit = w * 64 + (covered[i][w] & covered[j][w]).trailing_zeros() as usize;
                    format!(
                        "/{}#{}",
                        files[bit / SYMBOLS.len()].join("/"),
                        SYMBOLS[bit % SYMBOLS.len()]
                    )
                });
            match (witness, ab) {
                (Some(w), false) => failures.push(format!(
                    "{} and {} both cover {w} but do not conflict",
                    specs[i].text, specs[j].text
                )),
                (Some(_), true) => witnessed += 1,
                (None, true) => conservative += 1,
                (None, false) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed:#x} (rerun: LOCK_PROPS_SEED={seed:#x} cargo test --lib resource_props), {} failures \
         over {pairs} pairs; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "resource_props: {} resources, {pairs} pairs: {witnessed} share a file, {conservative} conflict without one",
        specs.len()
    );
    // The pool must contain both overlapping and disjoint pairs for this to mean anything.
    assert!(
        witnessed > pairs / 20 && pairs - witnessed - conservative > pairs / 20,
        "{pairs} pairs: {witnessed} with a common file, {conservative} conservative"
    );
}
