//! `bayes.db`: the appliance's own Bayes classifier — token statistics learned from this
//! organisation's mail (`palisade learn`, the console's "spam"/"not spam" buttons), read by the
//! `spam` check.
//!
//! - **Tokens** ([`tokens`]) come from the MIME view: subject words, From address, domain and
//!   name, Reply-To domain, mailer, the content types and real attachment types, every link's
//!   host, and the words of the visible text (HTML reduced to what a reader sees). Each is
//!   stored only as the first 8 bytes of its SHA-256 (`token` column): the database never
//!   holds words of patients' mail in clear.
//! - **Learning** counts each token once per message and class in one transaction; a message
//!   already learned (keyed by its Message-ID, else by its tokens) in the same class is not
//!   counted twice, and learning it in the other class moves its counts (`Learned::Moved`).
//! - **Classifying** is Robinson's f(w) with Fisher's chi-squared combining (as SpamBayes and
//!   SpamAssassin do): the up-to-150 most significant tokens (|f − 0.5| ≥ 0.1) give a
//!   probability in 0..1; nothing is scored until both classes have their minimum of learned
//!   messages (`[spam] bayes_min_spam`/`bayes_min_ham`).
//! - **Size**: at most [`MAX_TOKENS`] rows; [`Bayes::prune`] (after each batch learned) removes
//!   the tokens seen once and least recently first.

use std::collections::HashSet;
use std::path::Path;

use palisade_inspect::MessageView;
use palisade_inspect::text::BodyText;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, SqlContext, begin_immediate, migrate, now_unix, open_db};

const MIGRATIONS: &[&str] = &["
    CREATE TABLE bayes_token (
        token INTEGER PRIMARY KEY,
        spam INTEGER NOT NULL,
        ham INTEGER NOT NULL,
        touched INTEGER NOT NULL
    );
    CREATE INDEX bayes_token_touched ON bayes_token(touched);
    CREATE TABLE bayes_totals (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        spam INTEGER NOT NULL,
        ham INTEGER NOT NULL
    );
    INSERT INTO bayes_totals VALUES (1, 0, 0);
    CREATE TABLE bayes_seen (
        message INTEGER PRIMARY KEY,
        class TEXT NOT NULL,
        at INTEGER NOT NULL
    );
"];

/// Token rows kept at most.
pub const MAX_TOKENS: i64 = 2_000_000;
/// Tokens taken from one message at most.
pub const MAX_MESSAGE_TOKENS: usize = 3000;
/// Visible text read per message for tokens.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Tokens combined at most (the most significant).
const MAX_DISCRIMINATORS: usize = 150;
/// Robinson's strength of the prior and the prior itself (SpamBayes' defaults).
const STRENGTH: f64 = 0.45;
const PRIOR: f64 = 0.5;
const MIN_PROB_STRENGTH: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }
}

/// What learning one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Learned {
    /// Counted in its class for the first time.
    New,
    /// Already learned in this class: nothing changed.
    AlreadyKnown,
    /// Had been learned in the other class: its counts moved.
    Moved,
}

/// Learned message counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub spam: u64,
    pub ham: u64,
    pub tokens: u64,
}

/// What the classifier says about one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// 0 (ham) .. 1 (spam).
    pub probability: f64,
    /// Tokens of the message the database knew.
    pub known: usize,
    /// Of those, how many were significant enough to be combined.
    pub used: usize,
}

/// The tokens of a message (unique, at most [`MAX_MESSAGE_TOKENS`]).
pub fn tokens(view: &MessageView, body: &BodyText) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut add = |t: String, out: &mut Vec<String>| {
        if out.len() < MAX_MESSAGE_TOKENS && seen.insert(t.clone()) {
            out.push(t);
        }
    };
    let h = view.headers();
    if let Some(subject) = &h.subject {
        for w in words(subject) {
            add(format!("s:{w}"), &mut out);
        }
    }
    for m in &h.from {
        if let Some(a) = &m.address {
            let a = a.to_lowercase();
            if let Some((_, d)) = a.rsplit_once('@') {
                add(format!("fromdom:{d}"), &mut out);
            }
            add(format!("from:{a}"), &mut out);
        }
        if let Some(n) = &m.name {
            for w in words(n) {
                add(format!("fromname:{w}"), &mut out);
            }
        }
    }
    for m in &h.reply_to {
        if let Some((_, d)) = m.address.as_deref().and_then(|a| a.rsplit_once('@')) {
            add(format!("replyto:{}", d.to_lowercase()), &mut out);
        }
    }
    for f in &h.all {
        let name = f.name.to_ascii_lowercase();
        match name.as_str() {
            "x-mailer" | "user-agent" => {
                let first = f.value.split_whitespace().next().unwrap_or("");
                add(format!("mailer:{}", first.to_lowercase()), &mut out);
            }
            "list-unsubscribe" | "precedence" | "x-priority" | "importance" => {
                add(format!("hdr:{name}"), &mut out);
            }
            _ => {}
        }
    }
    for p in view.parts() {
        if let Some(t) = &p.declared_type {
            add(format!("ct:{t}"), &mut out);
        }
        if p.is_attachment {
            let real = p.real_type.as_ref().map_or("unknown", |t| &t.extension);
            add(format!("att:{real}"), &mut out);
        }
    }
    for l in &body.links {
        add(format!("url:{}", l.host), &mut out);
    }
    if body.html_parts > 0 && body.plain_parts == 0 {
        add("html-only".into(), &mut out);
    }
    if body.images > 0 {
        add(format!("images:{}", body.images.min(10)), &mut out);
    }
    for w in words(&body.text) {
        add(w, &mut out);
    }
    out
}

/// Words of `text` as tokens: lower case; 3..=24 characters; longer ones as a `skip:` token of
/// their first character and length in tens; long numbers by their length only.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || "$€£%'-!".contains(c)))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '-'))
        .filter_map(|w| {
            let n = w.chars().count();
            if n < 3 {
                return None;
            }
            if w.chars().all(|c| c.is_ascii_digit()) {
                return Some(if n > 6 {
                    format!("num:{n}")
                } else {
                    w.to_string()
                });
            }
            if n > 24 {
                let first = w.chars().next().unwrap_or('x').to_lowercase();
                return Some(format!("skip:{first}:{}", n / 10 * 10));
            }
            Some(w.to_lowercase())
        })
}

/// What a token is stored as.
fn token_id(token: &str) -> i64 {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(b)
}

/// The key a learned message is remembered by: its Message-ID, or its tokens.
fn message_id(view: &MessageView, tokens: &[String]) -> i64 {
    match &view.headers().message_id {
        Some(id) if !id.trim().is_empty() => token_id(&format!("msgid:{}", id.trim())),
        _ => {
            let mut sorted: Vec<&String> = tokens.iter().collect();
            sorted.sort();
            let joined: Vec<&str> = sorted.iter().map(|s| s.as_str()).collect();
            token_id(&format!("tokens:{}", joined.join("\u{1}")))
        }
    }
}

pub struct Bayes {
    conn: rusqlite::Connection,
}

impl Bayes {
    /// Opens (creating or migrating) `bayes.db`.
    pub fn open(path: &Path) -> Result<Bayes> {
        let mut conn = open_db(path)?;
        // Statistics, not a promise to a client: a learned message lost in a power cut is
        // learned again, so each of many small learning transactions need not wait for fsync.
        conn.execute_batch("PRAGMA synchronous=NORMAL;").at(&conn)?;
        migrate::migrate(&mut conn, MIGRATIONS)?;
        Ok(Bayes { conn })
    }

    pub fn totals(&self) -> Result<Totals> {
        let (spam, ham): (i64, i64) = self
            .conn
            .query_row("SELECT spam, ham FROM bayes_totals WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .at(&self.conn)?;
        let tokens: i64 = self
            .conn
            .query_row("SELECT count(*) FROM bayes_token", [], |r| r.get(0))
            .at(&self.conn)?;
        Ok(Totals {
            spam: spam.max(0) as u64,
            ham: ham.max(0) as u64,
            tokens: tokens.max(0) as u64,
        })
    }

    /// Learns one message as `class`.
    pub fn learn(&mut self, view: &MessageView, class: Class) -> Result<Learned> {
        let body = palisade_inspect::text::body_text(view, MAX_TEXT_BYTES);
        let toks = tokens(view, &body);
        let key = message_id(view, &toks);
        let ids: Vec<i64> = toks.iter().map(|t| token_id(t)).collect();
        let now = now_unix();
        let tx = begin_immediate(&mut self.conn)?;
        let before: Option<String> = tx
            .query_row(
                "SELECT class FROM bayes_seen WHERE message = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .at(&tx)?;
        let result = match before.as_deref() {
            Some(c) if c == class.as_str() => return Ok(Learned::AlreadyKnown),
            Some(_) => Learned::Moved,
            None => Learned::New,
        };
        let (add_spam, add_ham) = match class {
            Class::Spam => (1i64, 0i64),
            Class::Ham => (0, 1),
        };
        let (sub_spam, sub_ham) = if result == Learned::Moved {
            (add_ham, add_spam)
        } else {
            (0, 0)
        };
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO bayes_token (token, spam, ham, touched) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(token) DO UPDATE SET
                        spam = max(0, spam + ?2 - ?5), ham = max(0, ham + ?3 - ?6), touched = ?4",
                )
                .at(&tx)?;
            for id in &ids {
                up.execute(params![id, add_spam, add_ham, now, sub_spam, sub_ham])
                    .at(&tx)?;
            }
        }
        tx.execute(
            "UPDATE bayes_totals SET spam = max(0, spam + ?1 - ?3), ham = max(0, ham + ?2 - ?4)
             WHERE id = 1",
            params![add_spam, add_ham, sub_spam, sub_ham],
        )
        .at(&tx)?;
        tx.execute(
            "INSERT INTO bayes_seen (message, class, at) VALUES (?1, ?2, ?3)
             ON CONFLICT(message) DO UPDATE SET class = ?2, at = ?3",
            params![key, class.as_str(), now],
        )
        .at(&tx)?;
        tx.commit().at(&self.conn)?;
        Ok(result)
    }

    /// The classifier's probability for the message, or `None` while fewer than `min_spam`
    /// spam or `min_ham` ham messages are learned.
    pub fn classify(
        &self,
        tokens: &[String],
        min_spam: u64,
        min_ham: u64,
    ) -> Result<Option<Classification>> {
        let t = self.totals_only()?;
        if t.0 < min_spam.max(1) || t.1 < min_ham.max(1) {
            return Ok(None);
        }
        let (nspam, nham) = (t.0 as f64, t.1 as f64);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT spam, ham FROM bayes_token WHERE token = ?1")
            .at(&self.conn)?;
        let mut probs = Vec::new();
        let mut known = 0;
        for tok in tokens {
            let row: Option<(i64, i64)> = stmt
                .query_row([token_id(tok)], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .at(&self.conn)?;
            let Some((s, h)) = row else { continue };
            let (s, h) = (s.max(0) as f64, h.max(0) as f64);
            if s + h == 0.0 {
                continue;
            }
            known += 1;
            let spam_ratio = (s / nspam).min(1.0);
            let ham_ratio = (h / nham).min(1.0);
            let p = spam_ratio / (spam_ratio + ham_ratio);
            let n = s + h;
            let f = (STRENGTH * PRIOR + n * p) / (STRENGTH + n);
            if (f - 0.5).abs() >= MIN_PROB_STRENGTH {
                probs.push(f);
            }
        }
        probs.sort_by(|a, b| {
            (b - 0.5)
                .abs()
                .partial_cmp(&(a - 0.5).abs())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        probs.truncate(MAX_DISCRIMINATORS);
        Ok(Some(Classification {
            probability: combine(&probs),
            known,
            used: probs.len(),
        }))
    }

    /// Keeps the table at most [`MAX_TOKENS`] rows (call after learning a batch): removes the
    /// tokens seen once and least recently first. Returns how many went.
    pub fn prune(&mut self) -> Result<u64> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM bayes_token", [], |r| r.get(0))
            .at(&self.conn)?;
        if count <= MAX_TOKENS {
            return Ok(0);
        }
        let gone = self
            .conn
            .execute(
                "DELETE FROM bayes_token WHERE token IN (
                    SELECT token FROM bayes_token WHERE spam + ham <= 1
                    ORDER BY touched LIMIT ?1)",
                [count - MAX_TOKENS + MAX_TOKENS / 10],
            )
            .at(&self.conn)?;
        Ok(gone as u64)
    }

    fn totals_only(&self) -> Result<(u64, u64)> {
        let (s, h): (i64, i64) = self
            .conn
            .prepare_cached("SELECT spam, ham FROM bayes_totals WHERE id = 1")
            .at(&self.conn)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(&self.conn)?;
        Ok((s.max(0) as u64, h.max(0) as u64))
    }
}

/// Fisher's chi-squared combining of token probabilities (0.5 when there are none).
pub fn combine(probs: &[f64]) -> f64 {
    if probs.is_empty() {
        return 0.5;
    }
    let n = probs.len();
    let clamp = |p: f64| p.clamp(1e-9, 1.0 - 1e-9);
    let ln_ham: f64 = probs.iter().map(|&p| clamp(p).ln()).sum();
    let ln_spam: f64 = probs.iter().map(|&p| (1.0 - clamp(p)).ln()).sum();
    let spamminess = 1.0 - chi2q(-2.0 * ln_spam, 2 * n);
    let hamminess = 1.0 - chi2q(-2.0 * ln_ham, 2 * n);
    ((spamminess - hamminess + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// P(chi² ≥ x2) for `v` (even) degrees of freedom.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_inspect::Limits;

    fn view(raw: &str) -> MessageView {
        MessageView::from_bytes(raw.as_bytes(), &Limits::default())
    }

    fn msg(id: usize, subject: &str, body: &str) -> MessageView {
        view(&format!(
            "From: Someone <s{id}@example.org>\r\nMessage-ID: <{id}@example.org>\r\nSubject: {subject}\r\n\r\n{body}\r\n"
        ))
    }

    fn toks(v: &MessageView) -> Vec<String> {
        tokens(v, &palisade_inspect::text::body_text(v, MAX_TEXT_BYTES))
    }

    #[test]
    fn combining_is_symmetric_and_bounded() {
        assert_eq!(combine(&[]), 0.5);
        assert!(combine(&[0.99, 0.99, 0.98]) > 0.95);
        assert!(combine(&[0.01, 0.02, 0.01]) < 0.05);
        let mixed = combine(&[0.99, 0.01]);
        assert!((mixed - 0.5).abs() < 0.01, "{mixed}");
        assert!((0.0..=1.0).contains(&combine(&[1.0; 150])));
        assert!((0.0..=1.0).contains(&combine(&[0.0; 150])));
    }

    #[test]
    fn tokens_cover_headers_links_and_words_and_are_bounded() {
        let v = view(concat!(
            "From: \"Prize Desk\" <win@lottery.example>\r\nReply-To: x@other.example\r\n",
            "X-Mailer: BulkMailer 2.0\r\nSubject: You WON a prize\r\nContent-Type: text/html\r\n\r\n",
            "<p>Claim at <a href=\"http://claim.example/x\">here</a> 12345678901 ",
            "supercalifragilisticexpialidociousness</p>"
        ));
        let t = toks(&v);
        for want in [
            "s:won",
            "s:prize",
            "fromdom:lottery.example",
            "from:win@lottery.example",
            "fromname:prize",
            "replyto:other.example",
            "mailer:bulkmailer",
            "url:claim.example",
            "html-only",
            "claim",
            "num:11",
            "skip:s:30",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
        }
        let mut raw = String::from("Subject: x\r\n\r\n");
        for i in 0..10_000 {
            raw.push_str(&format!("word{i} "));
        }
        assert_eq!(toks(&view(&raw)).len(), MAX_MESSAGE_TOKENS);
    }

    #[test]
    fn learns_classifies_relearns_and_stores_no_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bayes.db");
        let mut b = Bayes::open(&path).unwrap();
        let spam_words = "cheap pills viagra discount pharmacy online order";
        let ham_words = "ward round rota handover clinic meeting agenda";
        for i in 0..20 {
            let s = msg(i, "cheap pills", spam_words);
            assert_eq!(b.learn(&s, Class::Spam).unwrap(), Learned::New);
            let h = msg(1000 + i, "rota update", ham_words);
            assert_eq!(b.learn(&h, Class::Ham).unwrap(), Learned::New);
        }
        assert_eq!(
            b.learn(&msg(0, "cheap pills", spam_words), Class::Spam)
                .unwrap(),
            Learned::AlreadyKnown
        );
        let t = b.totals().unwrap();
        assert_eq!((t.spam, t.ham), (20, 20));
        // Below the minimum, nothing is said.
        let probe = toks(&msg(5000, "discount pharmacy", "order cheap viagra online"));
        assert!(b.classify(&probe, 50, 50).unwrap().is_none());
        let c = b.classify(&probe, 20, 20).unwrap().unwrap();
        assert!(c.probability > 0.9, "{c:?}");
        let ham_probe = toks(&msg(5001, "clinic rota", "handover meeting on the ward"));
        let c = b.classify(&ham_probe, 20, 20).unwrap().unwrap();
        assert!(c.probability < 0.1, "{c:?}");
        // Relearning a spam as ham moves its counts.
        assert_eq!(
            b.learn(&msg(3, "cheap pills", spam_words), Class::Ham)
                .unwrap(),
            Learned::Moved
        );
        let t = b.totals().unwrap();
        assert_eq!((t.spam, t.ham), (19, 21));
        drop(b);
        // No word is stored in clear.
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("bayes.db-wal")).unwrap_or_default();
        for hay in [&bytes, &wal] {
            assert!(!hay.windows(6).any(|w| w == b"viagra"));
            assert!(!hay.windows(8).any(|w| w == b"handover"));
        }
    }
}
