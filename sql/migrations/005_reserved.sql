-- Reserved: this number belongs to a migration of another branch. tern needs contiguous numbers, so this
-- no-op lets 007 load here; it is deleted when the branch that owns the number is merged.
select 1;

---- create above / drop below ----

select 1;
