-- The one place where an order meets its items and payments; most marts read from here.
-- loaded_at is the latest landing of any contributing row, so that incremental consumers
-- pick an order up again when a late payment, refund or status change lands.
select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.status,
    coalesce(t.item_count, 0) as item_count,
    coalesce(t.units, 0) as units,
    coalesce(t.items_amount, 0) as items_amount,
    coalesce(p.paid_amount, 0) as paid_amount,
    coalesce(p.refunded_amount, 0) as refunded_amount,
    coalesce(p.paid_amount, 0) - coalesce(p.refunded_amount, 0) as net_amount,
    p.last_payment_date,
    greatest(o.loaded_at, coalesce(t.loaded_at, o.loaded_at), coalesce(p.loaded_at, o.loaded_at))
        as loaded_at
from {{ ref('stg_orders') }} as o
left join {{ ref('int_order_totals') }} as t using (order_id)
left join {{ ref('int_payments_by_order') }} as p using (order_id)
