//! Diesel table definitions shared by both backends. Written by hand to match
//! `migrations/{sqlite,postgres}`: only SQL types both backends share appear here.

diesel::table! {
    sessions (id) {
        id -> Text,
        name -> Text,
        status -> Text,
        handshake_mode -> Text,
        rotation_policy -> Text,
        save_interval -> Integer,
        metadata -> Text,
        last_event_id -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        coordination -> Text,
        rotation_interval_secs -> Integer,
        review_timeout_secs -> Integer,
        task_allocation -> Text,
        project -> Text,
        genome -> Text,
    }
}

diesel::table! {
    session_outcomes (session_id) {
        session_id -> Text,
        task_type -> Text,
        member_id -> Nullable<BigInt>,
        generation -> Nullable<Integer>,
        genome -> Text,
        outcome -> Text,
        fitness -> Nullable<Double>,
        terms -> Nullable<Text>,
        completed_at -> Timestamp,
    }
}

diesel::table! {
    mcp_sessions (id) {
        id -> Text,
        state -> Text,
        rev -> BigInt,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        writer -> Text,
    }
}

diesel::table! {
    applied_requests (key) {
        key -> Text,
        session_id -> Text,
        first_event -> Nullable<BigInt>,
        last_event -> Nullable<BigInt>,
        detail -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    populations (task_type) {
        task_type -> Text,
        state -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    participants (session_id, ai_id) {
        session_id -> Text,
        ai_id -> Text,
        role -> Text,
        permissions -> Text,
        token_digest -> Text,
        joined_at -> Timestamp,
        left_at -> Nullable<Timestamp>,
        acked_event_id -> BigInt,
        checkpoint -> Nullable<Text>,
        skills -> Text,
    }
}

diesel::table! {
    events (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        actor -> Nullable<Text>,
        kind -> Text,
        priority -> Text,
        payload -> Text,
        created_at -> Timestamp,
        recipient -> Nullable<Text>,
    }
}

diesel::table! {
    context_snapshots (id) {
        id -> Text,
        session_id -> Text,
        event_id -> BigInt,
        created_at -> Timestamp,
        encoding -> Text,
        context -> Binary,
        trigger -> Text,
    }
}

diesel::table! {
    session_snapshots (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        event_id -> BigInt,
        created_at -> Timestamp,
        trigger -> Text,
        encoding -> Text,
        bytes -> BigInt,
        state -> Binary,
    }
}

diesel::table! {
    messages (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        from_ai -> Text,
        to_ai -> Nullable<Text>,
        priority -> Text,
        body -> Text,
        reply_to -> Nullable<BigInt>,
        thread_id -> BigInt,
        requires_ack -> Bool,
        ack_deadline -> Nullable<Timestamp>,
        overdue_alerted -> Bool,
        created_at -> Timestamp,
    }
}

// What each participant has not read yet (migration `000010_message_unread`).
diesel::table! {
    message_unread (session_id, ai_id, message_id) {
        session_id -> Text,
        ai_id -> Text,
        message_id -> BigInt,
    }
}

// Each participant's presence as last announced (migration `000015_presence`).
diesel::table! {
    presence (session_id, ai_id) {
        session_id -> Text,
        ai_id -> Text,
        state -> Text,
        last_seen -> Nullable<Timestamp>,
    }
}

diesel::table! {
    message_receipts (session_id, message_id, ai_id) {
        session_id -> Text,
        message_id -> BigInt,
        ai_id -> Text,
        read_at -> Nullable<Timestamp>,
        acked_at -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        shown_at -> Nullable<Timestamp>,
        shown_via -> Nullable<Text>,
    }
}

diesel::table! {
    tasks (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        parent_id -> Nullable<BigInt>,
        description -> Text,
        assigned_to -> Nullable<Text>,
        status -> Text,
        blocked_reason -> Nullable<Text>,
        dependencies -> Text,
        skills -> Text,
        estimated_secs -> Nullable<Integer>,
        metadata -> Text,
        handoff -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    code_changes (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        ai_id -> Text,
        co_author -> Nullable<Text>,
        operation -> Text,
        file_path -> Text,
        new_path -> Nullable<Text>,
        diff -> Nullable<Text>,
        lines -> Text,
        symbols -> Text,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
        task_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    locks (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        resource -> Text,
        holder -> Text,
        mode -> Text,
        operation -> Nullable<Text>,
        state -> Text,
        lease_secs -> Integer,
        fencing_token -> Nullable<BigInt>,
        requested_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        released_at -> Nullable<Timestamp>,
        release_reason -> Nullable<Text>,
        task_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    suggestions (session_id, id) {
        session_id -> Text,
        id -> BigInt,
        ai_id -> Text,
        file_path -> Text,
        diff -> Text,
        lines -> Text,
        reason -> Nullable<Text>,
        task_id -> Nullable<BigInt>,
        status -> Text,
        resolved_by -> Nullable<Text>,
        note -> Nullable<Text>,
        change_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        resolved_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(participants -> sessions (session_id));
diesel::joinable!(events -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(
    sessions,
    participants,
    events,
    messages,
    message_receipts,
    message_unread,
    locks
);
