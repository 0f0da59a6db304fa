-- every status change of every order, in the order it happened
select
    order_id,
    customer_id,
    order_date,
    status,
    updated_at,
    loaded_at
from {{ source('raw', 'orders') }}
