"""Pure formatters: SmsRequest -> the exact bytes the provider receives."""
