select
    payment_id,
    order_id,
    payment_method,
    amount,
    paid_at,
    cast(paid_at as date) as payment_date,
    loaded_at
from {{ source('raw', 'payments') }}
