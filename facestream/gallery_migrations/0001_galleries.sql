-- galleries, subjects and their enrolled faces
create extension if not exists vector;
create table gallery (
    id bigint generated always as identity primary key,
    principal text not null,
    name text not null,
    created_at timestamptz not null default now(),
    forgotten_at timestamptz,
    unique (principal, name)
);
create table subject (
    id bigint generated always as identity primary key,
    gallery_id bigint not null references gallery (id) on delete cascade,
    name text not null,
    created_at timestamptz not null default now(),
    forgotten_at timestamptz,
    unique (gallery_id, name)
);
-- Per face its embedding and where it came from; never the face or its image.
create table face (
    id bigint generated always as identity primary key,
    subject_id bigint not null references subject (id) on delete cascade,
    principal text not null,
    request_id text not null,
    image_index integer not null,
    embedding vector(4096),  -- VGG-Face's; null once forgotten
    image_sha256 bytea not null,
    box_x integer not null,
    box_y integer not null,
    box_w integer not null,
    box_h integer not null,
    accepted_at timestamptz not null,
    enrolled_at timestamptz not null default now(),
    forgotten_at timestamptz,
    unique (principal, request_id, image_index)
);
create index face_of_subject on face (subject_id) where embedding is not null;
