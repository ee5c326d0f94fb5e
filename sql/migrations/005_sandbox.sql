-- Reserved for the sandbox schema, which is written on its own branch; tern needs contiguous migration numbers,
-- so this no-op lets 006 apply until that branch's 005_sandbox.sql replaces it.
select 1;

---- create above / drop below ----

select 1;
