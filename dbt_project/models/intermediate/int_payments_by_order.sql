select
    order_id,
    sum(case when amount > 0 then amount else 0 end) as paid_amount,
    -sum(case when amount < 0 then amount else 0 end) as refunded_amount,
    max(payment_date) as last_payment_date,
    max(loaded_at) as loaded_at
from {{ ref('stg_payments') }}
group by order_id
