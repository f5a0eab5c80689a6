-- The provider's id for each user and for the owner of each saved card (a Stripe Customer).
ALTER TABLE users ADD COLUMN provider_customer TEXT;
ALTER TABLE payment_methods ADD COLUMN provider_customer TEXT;
