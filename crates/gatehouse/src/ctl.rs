//! `gatehouse ctl`: the admin API from a shell.

use crate::cli::{CtlAction, CtlArgs};
use gatehouse_admin::client::request;
use http::Method;
use std::process::ExitCode;

pub fn ctl(args: CtlArgs) -> ExitCode {
    // The config file is read only for what was not given.
    let config = if args.admin.is_none() || args.token.is_none() {
        gatehouse_config::load(&args.config.path).ok()
    } else {
        None
    };
    let Some(admin) = args
        .admin
        .or_else(|| config.as_ref().and_then(|c| c.server.admin))
    else {
        eprintln!(
            "no admin listener: give --admin ADDR, or set [server] admin in {}",
            args.config.path.display()
        );
        return ExitCode::from(2);
    };
    let token = args
        .token
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.server.admin_token.clone()));
    let (method, path, body) = match &args.action {
        CtlAction::Status { .. } => (Method::GET, "/status".to_string(), String::new()),
        CtlAction::Drain { pool, server } => (
            Method::POST,
            action_path(pool, server, "drain"),
            String::new(),
        ),
        CtlAction::Disable { pool, server } => (
            Method::POST,
            action_path(pool, server, "disable"),
            String::new(),
        ),
        CtlAction::Enable { pool, server } => (
            Method::POST,
            action_path(pool, server, "enable"),
            String::new(),
        ),
        CtlAction::Weight {
            pool,
            server,
            weight,
        } => (
            Method::POST,
            action_path(pool, server, "weight"),
            weight.clone(),
        ),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(request(admin, method, &path, token.as_deref(), &body)) {
        Ok((200, text)) => {
            match &args.action {
                CtlAction::Status { json: false } => print_status(&text),
                _ => print!("{text}"),
            }
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprint!("{status}: {text}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn action_path(pool: &str, server: &str, what: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!("/pools/{}/servers/{}/{what}", enc(pool), enc(server))
}

/// A table of pools and servers.
fn print_status(text: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        print!("{text}");
        return;
    };
    println!(
        "gatehouse {} · generation {} · up {} s · {}",
        v["version"].as_str().unwrap_or("?"),
        v["generation"],
        v["uptime_seconds"],
        match &v["last_reload"] {
            serde_json::Value::Null => "no reload yet".to_string(),
            r if r["ok"] == true => "last reload ok".to_string(),
            r => format!("last reload failed: {}", r["error"].as_str().unwrap_or("?")),
        }
    );
    println!(
        "{:<16} {:<28} {:<8} {:<9} {:>9} {:>6} {:>10} {:>8}",
        "POOL", "SERVER", "HEALTH", "STATE", "IN-FLIGHT", "WEIGHT", "REQUESTS", "FAILURES"
    );
    for p in v["pools"].as_array().into_iter().flatten() {
        for s in p["servers"].as_array().into_iter().flatten() {
            println!(
                "{:<16} {:<28} {:<8} {:<9} {:>9} {:>6} {:>10} {:>8}",
                p["name"].as_str().unwrap_or(""),
                s["addr"].as_str().unwrap_or(""),
                if s["healthy"] == true { "up" } else { "down" },
                s["admin_state"].as_str().unwrap_or(""),
                s["in_flight"].to_string(),
                s["weight"].to_string(),
                s["requests"].to_string(),
                s["failures"].to_string(),
            );
        }
    }
}
