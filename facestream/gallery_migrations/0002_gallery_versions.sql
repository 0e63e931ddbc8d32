-- a version per gallery, raised by every enrolment and forget, that copies of its faces check
alter table gallery add column version bigint not null default 0;
alter table face add column gallery_id bigint references gallery (id) on delete cascade;
update face set gallery_id = subject.gallery_id from subject where subject.id = face.subject_id;
alter table face alter column gallery_id set not null;
-- The gallery's version that wrote or forgot this face: a copy at version V reads the faces
-- changed after V, and no others.
alter table face add column changed_version bigint not null default 0;
create index face_changes on face (gallery_id, changed_version);
