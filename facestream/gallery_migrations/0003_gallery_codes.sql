-- each gallery's count of faces, and each face's binary code for searching large galleries
alter table gallery add column faces bigint not null default 0;
update gallery set faces = (
    select count(*) from face where face.gallery_id = gallery.id and face.embedding is not null
);
-- The signs of the embedding, one bit each (512 bytes a face; null once forgotten): a large
-- gallery is searched by these codes' Hamming distance in each process's copy of them, and
-- the nearest candidates ranked by their exact cosine distance here (docs/recognition.md,
-- "At scale").
alter table face add column bits bit(4096)
    generated always as (binary_quantize(embedding)::bit(4096)) stored;
