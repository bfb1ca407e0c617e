//! Checks and normalises the records of a chunk in parallel (rayon), keeping their order.
//!
//! Everything that can be decided from the record alone is decided here, so the apply
//! stage only meets problems that need the database (references, the matching table).

use std::sync::LazyLock;

use rayon::prelude::*;

use crate::error::{Code, Position, Problem, Warnings};
use crate::model::{
    Account, Client, Email, Kind, Parsed, Premise, RawAccount, RawClient, RawPremise, RawRecord,
    Record, Role, Validated,
};
use crate::phone;

/// Validation's threads: one fewer than the machine has cores, at least one
/// (`RAYON_NUM_THREADS` overrides). The parser keeps one core busy by itself and is the
/// slowest stage of `check` and of a re-import; on two cores, validating on two threads took
/// CPU from it and made both slower, and threads other than a regex's first user pay for its
/// cache pool.
static POOL: LazyLock<Option<rayon::ThreadPool>> = LazyLock::new(|| {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("validate-{i}"))
        .start_handler(|_| crate::stage::background_priority());
    // Left at zero threads, rayon reads RAYON_NUM_THREADS itself.
    let pool = match std::env::var_os("RAYON_NUM_THREADS") {
        Some(_) => pool,
        None => pool.num_threads(
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
        ),
    };
    pool.build().ok()
});

/// Validates a chunk; the output has the input's order and length.
pub fn validate_chunk(chunk: Vec<Parsed>) -> Vec<Validated> {
    match &*POOL {
        Some(pool) => pool.install(|| chunk.into_par_iter().map(validate).collect()),
        // No thread could be started: validate on this one.
        None => chunk.into_iter().map(validate).collect(),
    }
}

pub fn validate(parsed: Parsed) -> Validated {
    let Parsed {
        position,
        body,
        mut warnings,
        end,
    } = parsed;
    let body = body.and_then(|raw| {
        let mut check = Check {
            position: &position,
            warnings: &mut warnings,
        };
        match raw {
            RawRecord::Premise(p) => check.premise(p).map(Record::Premise),
            RawRecord::Client(c) => check.client(c).map(Record::Client),
        }
    });
    Validated {
        position,
        body,
        warnings,
        end,
    }
}

struct Check<'a> {
    position: &'a Position,
    warnings: &'a mut Warnings,
}

impl Check<'_> {
    fn problem(&self, code: Code, field: &str, message: impl Into<String>) -> Box<Problem> {
        Box::new(Problem::new(code, message, self.position.clone()).field(field))
    }

    fn warn(&mut self, code: Code, field: &str, message: impl Into<String>) {
        let warning = self.problem(code, field, message);
        self.warnings.push(*warning);
    }

    fn required(
        &self,
        value: Option<String>,
        field: &str,
        what: &str,
    ) -> Result<String, Box<Problem>> {
        value.ok_or_else(|| self.problem(Code::MissingField, field, format!("{what} is required")))
    }

    fn integer(
        &self,
        value: Option<String>,
        field: &str,
        min: Option<i64>,
    ) -> Result<Option<i64>, Box<Problem>> {
        let Some(text) = value else { return Ok(None) };
        let n: i64 = text.parse().map_err(|_| {
            self.problem(
                Code::InvalidInteger,
                field,
                format!("{text:?} is not a whole number"),
            )
        })?;
        if let Some(min) = min
            && n < min
        {
            return Err(self.problem(Code::NegativeNumber, field, format!("{n} is below {min}")));
        }
        Ok(Some(n))
    }

    /// Areas: a decimal point or, as 1C writes them, a decimal comma; must be above zero.
    fn area(&self, value: Option<String>, field: &str) -> Result<Option<f64>, Box<Problem>> {
        let Some(text) = value else { return Ok(None) };
        let normalized = text.replace(',', ".");
        let plain = !normalized.is_empty()
            && normalized.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && normalized.bytes().filter(|&b| b == b'.').count() <= 1;
        let area: f64 = match normalized.parse() {
            Ok(a) if plain => a,
            _ => {
                return Err(self.problem(
                    Code::InvalidDecimal,
                    field,
                    format!("{text:?} is not a decimal number"),
                ));
            }
        };
        if area <= 0.0 || !area.is_finite() {
            return Err(self.problem(
                Code::InvalidArea,
                field,
                format!("area must be above zero, got {text}"),
            ));
        }
        Ok(Some(area))
    }

    fn premise(&mut self, raw: RawPremise) -> Result<Premise, Box<Problem>> {
        let address = self.required(raw.address, "address", "the address")?;
        let number = self.required(raw.number, "number", "the premise number")?;
        let kind = match raw.kind {
            None => Kind::Flat,
            Some(k) => Kind::parse(&k).ok_or_else(|| {
                self.problem(
                    Code::InvalidKind,
                    "kind",
                    format!("kind {k:?} is not one of flat, non_residential, parking, storage"),
                )
            })?,
        };
        let floor = self.integer(raw.floor, "floor", None)?;
        let entrance = self.integer(raw.entrance, "entrance", Some(0))?;
        let rooms = self.integer(raw.rooms, "rooms", Some(0))?;
        let area = self.area(raw.area, "area")?;
        let cadastral_number = match raw.cadastral_number {
            Some(c) if !is_cadastral(&c) => {
                return Err(self.problem(
                    Code::InvalidCadastralNumber,
                    "cadastral-number",
                    format!("{c:?} is not a cadastral number like 16:50:011105:1234"),
                ));
            }
            c => c,
        };
        let mut accounts = Vec::with_capacity(raw.accounts.len());
        for account in raw.accounts {
            accounts.push(self.account(account)?);
        }
        for (i, a) in accounts.iter().enumerate() {
            if let Some(b) = accounts[..i]
                .iter()
                .find(|b| b.id == a.id || b.number == a.number)
            {
                let (what, value) = if b.id == a.id {
                    ("id", &a.id)
                } else {
                    ("number", &a.number)
                };
                return Err(self.problem(
                    Code::DuplicateAccount,
                    "account.id",
                    format!("two accounts of the premise have the same {what} {value:?}"),
                ));
            }
        }
        Ok(Premise {
            id: raw.id,
            address,
            number,
            kind,
            floor,
            entrance,
            rooms,
            area,
            cadastral_number,
            accounts,
        })
    }

    fn account(&mut self, raw: RawAccount) -> Result<Account, Box<Problem>> {
        let number = self
            .required(raw.number, "account.number", "the account number")
            .map_err(|p| with_account(p, &raw.id))?;
        let area = self
            .area(raw.area, "account.area")
            .map_err(|p| with_account(p, &raw.id))?;
        let residents = self
            .integer(raw.residents, "account.residents", Some(0))
            .map_err(|p| with_account(p, &raw.id))?;
        Ok(Account {
            id: raw.id,
            number,
            area,
            residents,
        })
    }

    fn client(&mut self, raw: RawClient) -> Result<Client, Box<Problem>> {
        let name = self.required(raw.name, "name", "the client's name (ФИО)")?;
        let phone = match raw.phone {
            None => {
                self.warn(Code::ClientWithoutPhone, "phone", "the client has no phone: matching by phone is impossible");
                None
            }
            Some(raw_phone) => Some(phone::normalize(&raw_phone).ok_or_else(|| {
                self.problem(
                    Code::InvalidPhone,
                    "phone",
                    format!("{raw_phone:?} is not a valid phone number (expected e.g. 8 (912) 345-67-89 or +7 912 345 67 89)"),
                )
            })?),
        };
        let email = match raw.email {
            None => Email::Absent,
            Some(e) if is_plausible_email(&e) => Email::Valid(e),
            Some(e) => {
                self.warn(
                    Code::InvalidEmail,
                    "email",
                    format!("{e:?} is not a plausible e-mail address; the card keeps its e-mail"),
                );
                Email::Invalid
            }
        };
        let mut premises = Vec::with_capacity(raw.premises.len());
        for link in raw.premises {
            let role = match link.role {
                None => {
                    self.warn(
                        Code::RoleMissing,
                        "premise.role",
                        format!(
                            "the link to premise {} has no role; taken as resident",
                            link.premise
                        ),
                    );
                    Role::Resident
                }
                Some(r) => Role::parse(&r).ok_or_else(|| {
                    self.problem(
                        Code::InvalidRole,
                        "premise.role",
                        format!("role {r:?} is not one of owner, tenant, resident"),
                    )
                })?,
            };
            premises.push((link.premise, role));
        }
        premises.sort();
        // One role per premise: the strongest one named wins (owner over tenant over resident).
        premises.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut accounts = raw.accounts;
        accounts.sort();
        accounts.dedup();
        Ok(Client {
            id: raw.id,
            name,
            phone,
            email,
            premises,
            accounts,
        })
    }
}

fn with_account(mut problem: Box<Problem>, account: &str) -> Box<Problem> {
    problem.message = format!("account {account}: {}", problem.message);
    problem
}

/// `NN:NN:NNNNNN(N):N…` — four groups of digits separated by colons.
fn is_cadastral(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0].len() == 2
        && parts[1].len() == 2
        && (6..=7).contains(&parts[2].len())
}

/// `local@domain.tld`: what the RFC allows, with a dot in the domain as mail servers need.
fn is_plausible_email(s: &str) -> bool {
    email_address::EmailAddress::parse_with_options(
        s,
        email_address::Options::default().without_display_text(),
    )
    .is_ok_and(|e| {
        let domain = e.domain();
        domain.contains('.')
            && !domain.starts_with('[')
            && domain.rsplit('.').next().is_some_and(|tld| tld.len() >= 2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadastral_numbers() {
        assert!(is_cadastral("16:50:011105:1234"));
        assert!(is_cadastral("77:01:0001001:1"));
        assert!(!is_cadastral("16-50-011105-1234"));
        assert!(!is_cadastral("16:50:011105"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn validation_threads_run_at_the_background_priority() {
        let pool = POOL.as_ref().expect("the validation pool started");
        let own_nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
        let nice = pool.install(own_nice);
        assert!(nice >= Some(crate::stage::BACKGROUND_NICE), "{nice:?}");
    }

    #[test]
    fn a_chunk_comes_back_in_its_order_as_validated_one_by_one() {
        let chunk: Vec<Parsed> = (0..3000u64)
            .map(|i| {
                let phone = match i % 3 {
                    0 => format!("8 (912) {:03}-{:02}-{:02}", i % 1000, i % 100, i % 97),
                    1 => format!("{i}"),
                    _ => format!("+7 843 {:03} {:04}", i % 1000, i),
                };
                Parsed {
                    position: Position {
                        record_index: Some(i),
                        ..Position::default()
                    },
                    body: Ok(RawRecord::Client(RawClient {
                        id: format!("C-{i}"),
                        name: Some(format!("Клиент {i}")),
                        phone: Some(phone),
                        ..RawClient::default()
                    })),
                    warnings: Warnings::default(),
                    end: None,
                }
            })
            .collect();
        let one_by_one: Vec<String> = (chunk.iter().cloned())
            .map(|p| format!("{:?}", validate(p)))
            .collect();
        let pooled: Vec<String> = (validate_chunk(chunk).iter())
            .map(|v| format!("{v:?}"))
            .collect();
        assert_eq!(pooled.len(), 3000);
        assert!(
            pooled.iter().any(|v| v.contains("+7912")) && pooled.iter().any(|v| v.contains("Err"))
        );
        assert_eq!(pooled, one_by_one);
    }

    #[test]
    fn emails() {
        assert!(is_plausible_email("ivanov@example.ru"));
        assert!(!is_plausible_email("ivanov@example"));
        assert!(!is_plausible_email("ivanov.example.ru"));
        assert!(!is_plausible_email("Иванов <ivanov@example.ru>"));
    }
}
